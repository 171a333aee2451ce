-- Issue 16: the new registry can hold the objects the old system stored (CONTRACT §6, "What the
-- previous system left"). ov_assets.warehouse.adoption copies them in on every `ov-assets migrate`
-- (upload_source 'migration', metadata.adopted_from naming the old table and row); the old tables
-- are kept verbatim and never dropped. Before 001 runs, an old-shape s3_files_registry is renamed
-- to s3_files_registry_old (adoption.set_aside_old_registry), so 001 creates the new one.

-- 1. An adopted object whose PQR cannot be resolved (its SGC / radicado is in no ov_* row yet)
--    is still known, with numero_radicado NULL until a later migrate or the landing folder
--    resolves it. Only adopted rows may lack it: everything the pipeline writes names its PQR.
ALTER TABLE data_general.s3_files_registry ALTER COLUMN numero_radicado DROP NOT NULL;
ALTER TABLE data_general.s3_files_registry DROP CONSTRAINT IF EXISTS s3_files_registry_radicado_known;
ALTER TABLE data_general.s3_files_registry ADD CONSTRAINT s3_files_registry_radicado_known
    CHECK (numero_radicado IS NOT NULL OR (upload_source = 'migration' AND metadata ? 'adopted_from'));

-- 2. The archive asks, for a landing file, whether an adopted object holds the same bytes under
--    the same name (objects/archive.py current_keys) before it stores anything.
CREATE INDEX IF NOT EXISTS s3_files_registry_adopted_idx
    ON data_general.s3_files_registry (file_hash, filename) WHERE metadata ? 'adopted_from';
