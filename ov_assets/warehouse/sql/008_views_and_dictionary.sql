-- Views and data dictionary (issue 19): the PQRs of both empresas in one view, a view without
-- personal data for analysts, comments on every table, view and column ov-assets owns, and
-- personal data on a need-to-know basis (Ley 1581 de 2012).
--
-- ov_pqr_masked leaves out names, documents, phones, e-mails and every field a customer fills
-- with free text or a file name (ov_assets.core.dictionary marks them `personal`); it keeps NIC,
-- dates, status, type, channel, warnings and counts of the stored files. Views run with their
-- owner's rights, so ov_analyst reads it without any right on the tables below it.
-- A later migration that changes the type of a column these views select must drop and
-- recreate them (PostgreSQL refuses ALTER COLUMN TYPE under a view).

-- 1. Views.
CREATE OR REPLACE VIEW data_general.ov_pqr AS
SELECT 'afinia'::text AS empresa,
       id,
       numero_radicado,
       fecha,
       nic,
       documento_identidad,
       nombres_apellidos,
       lectura,
       correo_electronico,
       telefono,
       celular,
       tipo_pqr,
       canal_respuesta,
       documento_prueba,
       cuerpo_reclamacion,
       estado_solicitud,
       finalizar,
       adjuntar_archivo,
       numero_reclamo_sgc,
       comentarios,
       hash_registro,
       fecha_extraccion,
       archivo_origen,
       warnings,
       archivos_s3_urls,
       procesado_flag,
       created_at,
       updated_at
FROM data_general.ov_afinia
UNION ALL
SELECT 'aire'::text AS empresa,
       id,
       numero_radicado,
       fecha,
       nic,
       documento_identidad,
       nombres_apellidos,
       lectura,
       correo_electronico,
       telefono,
       celular,
       tipo_pqr,
       canal_respuesta,
       documento_prueba,
       cuerpo_reclamacion,
       estado_solicitud,
       finalizar,
       adjuntar_archivo,
       numero_reclamo_sgc,
       comentarios,
       hash_registro,
       fecha_extraccion,
       archivo_origen,
       warnings,
       archivos_s3_urls,
       procesado_flag,
       created_at,
       updated_at
FROM data_general.ov_aire;

CREATE OR REPLACE VIEW data_general.ov_pqr_masked AS
SELECT empresa,
       numero_radicado,
       numero_reclamo_sgc,
       nic,
       fecha,
       tipo_pqr,
       canal_respuesta,
       estado_solicitud,
       warnings,
       CASE jsonb_typeof(archivos_s3_urls) WHEN 'array' THEN jsonb_array_length(archivos_s3_urls) END
           AS archivos_count,
       CASE jsonb_typeof(archivos_s3_urls) WHEN 'array' THEN
           (SELECT count(*)::integer FROM jsonb_array_elements(archivos_s3_urls) AS f(file)
            WHERE f.file ->> 'file_type' = 'attachment') END
           AS adjuntos_count,
       fecha_extraccion,
       procesado_flag,
       created_at,
       updated_at
FROM data_general.ov_pqr;

-- 2. The role that reads personal data: a NOLOGIN group role like those of 002_roles.sql (an
--    operator grants it to the few login users who need it). Idempotent: roles are cluster-wide.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ov_analyst_personal') THEN
        BEGIN
            CREATE ROLE ov_analyst_personal NOLOGIN;
        EXCEPTION
            WHEN duplicate_object THEN NULL;  -- created meanwhile by another database's migration
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'role ov_analyst_personal does not exist and % may not create roles', current_user
                    USING HINT = 'Ask a DBA to run: CREATE ROLE ov_analyst_personal NOLOGIN; then rerun ov-assets migrate';
        END;
    END IF;
END $$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO ov_analyst_personal', current_database());
END $$;
GRANT USAGE ON SCHEMA data_general TO ov_analyst_personal;
GRANT SELECT ON public.schema_migrations TO ov_analyst_personal;
-- Everything, personal columns included (both views, every table), now and later.
GRANT SELECT ON ALL TABLES IN SCHEMA data_general TO ov_analyst_personal;
ALTER DEFAULT PRIVILEGES IN SCHEMA data_general GRANT SELECT ON TABLES TO ov_analyst_personal;

-- 3. ov_analyst: the masked view instead of the tables that hold personal columns. 002's default
--    privileges granted it the new ov_pqr too; that is taken back here.
REVOKE SELECT ON data_general.ov_afinia, data_general.ov_aire,
                 data_general.ov_afinia_history, data_general.ov_aire_history,
                 data_general.ov_pqr
    FROM ov_analyst;
GRANT SELECT ON data_general.ov_pqr_masked TO ov_analyst;

-- 4. Comments: every table, view and column ov-assets owns in data_general. The block is
--    generated (python scripts/data_dictionary.py --sql) from ov_assets/core/dictionary.py, the
--    source of the Dagster column schemas and docs/data-dictionary.md too; test_views.py checks
--    that the latest block equals the dictionary. A changed description goes into a new
--    migration with a new block (this file is checksummed).
-- BEGIN data dictionary: generated from ov_assets/core/dictionary.py by scripts/data_dictionary.py
DO $dictionary$
DECLARE
    d record;
BEGIN
    FOR d IN
        SELECT v.relation, v.column_name, v.description, c.oid, c.relkind
        FROM (VALUES
        ('ov_pqr_masked', NULL, 'ov_pqr without personal data (no names, documents, phones, e-mails, free text or file names): what ov_analyst reads. Join back to ov_pqr on (empresa, numero_radicado) with ov_analyst_personal.'),
        ('ov_pqr_masked', 'empresa', 'afinia or aire.'),
        ('ov_pqr_masked', 'numero_radicado', 'Filing number the portal assigned: identifies the PQR within its empresa.'),
        ('ov_pqr_masked', 'numero_reclamo_sgc', 'Claim number in the company''s SGC (commercial system); empty when the portal shows none.'),
        ('ov_pqr_masked', 'nic', 'NIC (Número de Identificación del Cliente): the electricity account the PQR is about. 5-12 digits expected (warning nic_invalid otherwise).'),
        ('ov_pqr_masked', 'fecha', 'Filing time shown by the portal, Bogotá local time; its day is the PQR''s partition.'),
        ('ov_pqr_masked', 'tipo_pqr', 'PQR type chosen on the portal (petición, queja, reclamo, ...).'),
        ('ov_pqr_masked', 'canal_respuesta', 'Channel through which the customer asked to be answered.'),
        ('ov_pqr_masked', 'estado_solicitud', 'Status of the PQR on the portal at extraction time (e.g. Finalizado).'),
        ('ov_pqr_masked', 'warnings', 'JSON array of soft-rule codes (CONTRACT §4), e.g. ["email_invalid"].'),
        ('ov_pqr_masked', 'archivos_count', 'Number of files stored for the PQR (elements of archivos_s3_urls); NULL when the row holds no list.'),
        ('ov_pqr_masked', 'adjuntos_count', 'Number of those files that are attachments (file_type attachment).'),
        ('ov_pqr_masked', 'fecha_extraccion', 'Extraction time of the stored version, Bogotá local time (for rows adopted from the old system: its load time).'),
        ('ov_pqr_masked', 'procesado_flag', 'TRUE once every file of the stored version is in the bucket.'),
        ('ov_pqr_masked', 'created_at', 'When ov-assets first inserted the row.'),
        ('ov_pqr_masked', 'updated_at', 'When the row last changed (a newer version, or its files stored).'),
        ('ov_pqr', NULL, 'ov_afinia and ov_aire in one view, with an empresa column. Holds personal data: ov_analyst_personal only.'),
        ('ov_pqr', 'empresa', 'afinia or aire.'),
        ('ov_pqr', 'id', 'Surrogate key of the row (identity; SERIAL in tables adopted from the old system).'),
        ('ov_pqr', 'numero_radicado', 'Filing number the portal assigned: identifies the PQR within its empresa.'),
        ('ov_pqr', 'fecha', 'Filing time shown by the portal, Bogotá local time; its day is the PQR''s partition.'),
        ('ov_pqr', 'nic', 'NIC (Número de Identificación del Cliente): the electricity account the PQR is about. 5-12 digits expected (warning nic_invalid otherwise).'),
        ('ov_pqr', 'documento_identidad', 'Identity document of the customer (cédula, or NIT as digits-DV).'),
        ('ov_pqr', 'nombres_apellidos', 'Full name of the customer.'),
        ('ov_pqr', 'lectura', 'Meter reading the customer reported, as typed (free text).'),
        ('ov_pqr', 'correo_electronico', 'E-mail address of the customer.'),
        ('ov_pqr', 'telefono', 'Landline phone of the customer, as typed.'),
        ('ov_pqr', 'celular', 'Mobile phone of the customer, as typed.'),
        ('ov_pqr', 'tipo_pqr', 'PQR type chosen on the portal (petición, queja, reclamo, ...).'),
        ('ov_pqr', 'canal_respuesta', 'Channel through which the customer asked to be answered.'),
        ('ov_pqr', 'documento_prueba', 'Name of the evidence file the customer attached, as the portal shows it.'),
        ('ov_pqr', 'cuerpo_reclamacion', 'Text of the complaint as the customer wrote it (free text).'),
        ('ov_pqr', 'estado_solicitud', 'Status of the PQR on the portal at extraction time (e.g. Finalizado).'),
        ('ov_pqr', 'finalizar', 'The portal''s ''Finalizar'' field as shown (free text, usually empty).'),
        ('ov_pqr', 'adjuntar_archivo', 'Name of a further file the customer attached, as the portal shows it.'),
        ('ov_pqr', 'numero_reclamo_sgc', 'Claim number in the company''s SGC (commercial system); empty when the portal shows none.'),
        ('ov_pqr', 'comentarios', 'Comments the portal shows on the PQR (free text).'),
        ('ov_pqr', 'hash_registro', 'SHA-256 (hex) of the 18 canonical business fields (CONTRACT §4): any change of any field changes it.'),
        ('ov_pqr', 'fecha_extraccion', 'Extraction time of the stored version, Bogotá local time (for rows adopted from the old system: its load time).'),
        ('ov_pqr', 'archivo_origen', 'Landing file name of the stored version; NULL for rows adopted from the old system.'),
        ('ov_pqr', 'warnings', 'JSON array of soft-rule codes (CONTRACT §4), e.g. ["email_invalid"].'),
        ('ov_pqr', 'archivos_s3_urls', 'JSON array of the PQR''s stored files: {file_type, filename, s3_url, sha256} each.'),
        ('ov_pqr', 'procesado_flag', 'TRUE once every file of the stored version is in the bucket.'),
        ('ov_pqr', 'created_at', 'When ov-assets first inserted the row.'),
        ('ov_pqr', 'updated_at', 'When the row last changed (a newer version, or its files stored).'),
        ('ov_afinia', NULL, 'Current state of Afinia''s Oficina Virtual PQRs: one row per numero_radicado, the latest extraction (CONTRACT §6). Personal columns: readable by ov_analyst_personal only; analysts use ov_pqr_masked.'),
        ('ov_afinia', 'id', 'Surrogate key of the row (identity; SERIAL in tables adopted from the old system).'),
        ('ov_afinia', 'numero_radicado', 'Filing number the portal assigned: identifies the PQR within its empresa.'),
        ('ov_afinia', 'fecha', 'Filing time shown by the portal, Bogotá local time; its day is the PQR''s partition.'),
        ('ov_afinia', 'nic', 'NIC (Número de Identificación del Cliente): the electricity account the PQR is about. 5-12 digits expected (warning nic_invalid otherwise).'),
        ('ov_afinia', 'documento_identidad', 'Identity document of the customer (cédula, or NIT as digits-DV).'),
        ('ov_afinia', 'nombres_apellidos', 'Full name of the customer.'),
        ('ov_afinia', 'lectura', 'Meter reading the customer reported, as typed (free text).'),
        ('ov_afinia', 'correo_electronico', 'E-mail address of the customer.'),
        ('ov_afinia', 'telefono', 'Landline phone of the customer, as typed.'),
        ('ov_afinia', 'celular', 'Mobile phone of the customer, as typed.'),
        ('ov_afinia', 'tipo_pqr', 'PQR type chosen on the portal (petición, queja, reclamo, ...).'),
        ('ov_afinia', 'canal_respuesta', 'Channel through which the customer asked to be answered.'),
        ('ov_afinia', 'documento_prueba', 'Name of the evidence file the customer attached, as the portal shows it.'),
        ('ov_afinia', 'cuerpo_reclamacion', 'Text of the complaint as the customer wrote it (free text).'),
        ('ov_afinia', 'estado_solicitud', 'Status of the PQR on the portal at extraction time (e.g. Finalizado).'),
        ('ov_afinia', 'finalizar', 'The portal''s ''Finalizar'' field as shown (free text, usually empty).'),
        ('ov_afinia', 'adjuntar_archivo', 'Name of a further file the customer attached, as the portal shows it.'),
        ('ov_afinia', 'numero_reclamo_sgc', 'Claim number in the company''s SGC (commercial system); empty when the portal shows none.'),
        ('ov_afinia', 'comentarios', 'Comments the portal shows on the PQR (free text).'),
        ('ov_afinia', 'hash_registro', 'SHA-256 (hex) of the 18 canonical business fields (CONTRACT §4): any change of any field changes it.'),
        ('ov_afinia', 'fecha_extraccion', 'Extraction time of the stored version, Bogotá local time (for rows adopted from the old system: its load time).'),
        ('ov_afinia', 'archivo_origen', 'Landing file name of the stored version; NULL for rows adopted from the old system.'),
        ('ov_afinia', 'warnings', 'JSON array of soft-rule codes (CONTRACT §4), e.g. ["email_invalid"].'),
        ('ov_afinia', 'archivos_s3_urls', 'JSON array of the PQR''s stored files: {file_type, filename, s3_url, sha256} each.'),
        ('ov_afinia', 'procesado_flag', 'TRUE once every file of the stored version is in the bucket.'),
        ('ov_afinia', 'created_at', 'When ov-assets first inserted the row.'),
        ('ov_afinia', 'updated_at', 'When the row last changed (a newer version, or its files stored).'),
        ('ov_aire', NULL, 'Current state of Air-e''s Oficina Virtual PQRs: one row per numero_radicado, the latest extraction (CONTRACT §6). Personal columns: readable by ov_analyst_personal only; analysts use ov_pqr_masked.'),
        ('ov_aire', 'id', 'Surrogate key of the row (identity; SERIAL in tables adopted from the old system).'),
        ('ov_aire', 'numero_radicado', 'Filing number the portal assigned: identifies the PQR within its empresa.'),
        ('ov_aire', 'fecha', 'Filing time shown by the portal, Bogotá local time; its day is the PQR''s partition.'),
        ('ov_aire', 'nic', 'NIC (Número de Identificación del Cliente): the electricity account the PQR is about. 5-12 digits expected (warning nic_invalid otherwise).'),
        ('ov_aire', 'documento_identidad', 'Identity document of the customer (cédula, or NIT as digits-DV).'),
        ('ov_aire', 'nombres_apellidos', 'Full name of the customer.'),
        ('ov_aire', 'lectura', 'Meter reading the customer reported, as typed (free text).'),
        ('ov_aire', 'correo_electronico', 'E-mail address of the customer.'),
        ('ov_aire', 'telefono', 'Landline phone of the customer, as typed.'),
        ('ov_aire', 'celular', 'Mobile phone of the customer, as typed.'),
        ('ov_aire', 'tipo_pqr', 'PQR type chosen on the portal (petición, queja, reclamo, ...).'),
        ('ov_aire', 'canal_respuesta', 'Channel through which the customer asked to be answered.'),
        ('ov_aire', 'documento_prueba', 'Name of the evidence file the customer attached, as the portal shows it.'),
        ('ov_aire', 'cuerpo_reclamacion', 'Text of the complaint as the customer wrote it (free text).'),
        ('ov_aire', 'estado_solicitud', 'Status of the PQR on the portal at extraction time (e.g. Finalizado).'),
        ('ov_aire', 'finalizar', 'The portal''s ''Finalizar'' field as shown (free text, usually empty).'),
        ('ov_aire', 'adjuntar_archivo', 'Name of a further file the customer attached, as the portal shows it.'),
        ('ov_aire', 'numero_reclamo_sgc', 'Claim number in the company''s SGC (commercial system); empty when the portal shows none.'),
        ('ov_aire', 'comentarios', 'Comments the portal shows on the PQR (free text).'),
        ('ov_aire', 'hash_registro', 'SHA-256 (hex) of the 18 canonical business fields (CONTRACT §4): any change of any field changes it.'),
        ('ov_aire', 'fecha_extraccion', 'Extraction time of the stored version, Bogotá local time (for rows adopted from the old system: its load time).'),
        ('ov_aire', 'archivo_origen', 'Landing file name of the stored version; NULL for rows adopted from the old system.'),
        ('ov_aire', 'warnings', 'JSON array of soft-rule codes (CONTRACT §4), e.g. ["email_invalid"].'),
        ('ov_aire', 'archivos_s3_urls', 'JSON array of the PQR''s stored files: {file_type, filename, s3_url, sha256} each.'),
        ('ov_aire', 'procesado_flag', 'TRUE once every file of the stored version is in the bucket.'),
        ('ov_aire', 'created_at', 'When ov-assets first inserted the row.'),
        ('ov_aire', 'updated_at', 'When the row last changed (a newer version, or its files stored).'),
        ('ov_afinia_history', NULL, 'Previous versions of Afinia''s PQRs: one row each time a row of ov_afinia is replaced.'),
        ('ov_afinia_history', 'history_id', 'Surrogate key of the history row.'),
        ('ov_afinia_history', 'replaced_at', 'When this version was replaced.'),
        ('ov_afinia_history', 'replaced_by_run', 'Dagster run id of the load that replaced it.'),
        ('ov_afinia_history', 'id', 'Surrogate key of the row (identity; SERIAL in tables adopted from the old system).'),
        ('ov_afinia_history', 'numero_radicado', 'Filing number the portal assigned: identifies the PQR within its empresa.'),
        ('ov_afinia_history', 'fecha', 'Filing time shown by the portal, Bogotá local time; its day is the PQR''s partition.'),
        ('ov_afinia_history', 'nic', 'NIC (Número de Identificación del Cliente): the electricity account the PQR is about. 5-12 digits expected (warning nic_invalid otherwise).'),
        ('ov_afinia_history', 'documento_identidad', 'Identity document of the customer (cédula, or NIT as digits-DV).'),
        ('ov_afinia_history', 'nombres_apellidos', 'Full name of the customer.'),
        ('ov_afinia_history', 'lectura', 'Meter reading the customer reported, as typed (free text).'),
        ('ov_afinia_history', 'correo_electronico', 'E-mail address of the customer.'),
        ('ov_afinia_history', 'telefono', 'Landline phone of the customer, as typed.'),
        ('ov_afinia_history', 'celular', 'Mobile phone of the customer, as typed.'),
        ('ov_afinia_history', 'tipo_pqr', 'PQR type chosen on the portal (petición, queja, reclamo, ...).'),
        ('ov_afinia_history', 'canal_respuesta', 'Channel through which the customer asked to be answered.'),
        ('ov_afinia_history', 'documento_prueba', 'Name of the evidence file the customer attached, as the portal shows it.'),
        ('ov_afinia_history', 'cuerpo_reclamacion', 'Text of the complaint as the customer wrote it (free text).'),
        ('ov_afinia_history', 'estado_solicitud', 'Status of the PQR on the portal at extraction time (e.g. Finalizado).'),
        ('ov_afinia_history', 'finalizar', 'The portal''s ''Finalizar'' field as shown (free text, usually empty).'),
        ('ov_afinia_history', 'adjuntar_archivo', 'Name of a further file the customer attached, as the portal shows it.'),
        ('ov_afinia_history', 'numero_reclamo_sgc', 'Claim number in the company''s SGC (commercial system); empty when the portal shows none.'),
        ('ov_afinia_history', 'comentarios', 'Comments the portal shows on the PQR (free text).'),
        ('ov_afinia_history', 'hash_registro', 'SHA-256 (hex) of the 18 canonical business fields (CONTRACT §4): any change of any field changes it.'),
        ('ov_afinia_history', 'fecha_extraccion', 'Extraction time of the stored version, Bogotá local time (for rows adopted from the old system: its load time).'),
        ('ov_afinia_history', 'archivo_origen', 'Landing file name of the stored version; NULL for rows adopted from the old system.'),
        ('ov_afinia_history', 'warnings', 'JSON array of soft-rule codes (CONTRACT §4), e.g. ["email_invalid"].'),
        ('ov_afinia_history', 'archivos_s3_urls', 'JSON array of the PQR''s stored files: {file_type, filename, s3_url, sha256} each.'),
        ('ov_afinia_history', 'procesado_flag', 'TRUE once every file of the stored version is in the bucket.'),
        ('ov_afinia_history', 'created_at', 'When ov-assets first inserted the row.'),
        ('ov_afinia_history', 'updated_at', 'When the row last changed (a newer version, or its files stored).'),
        ('ov_aire_history', NULL, 'Previous versions of Air-e''s PQRs: one row each time a row of ov_aire is replaced.'),
        ('ov_aire_history', 'history_id', 'Surrogate key of the history row.'),
        ('ov_aire_history', 'replaced_at', 'When this version was replaced.'),
        ('ov_aire_history', 'replaced_by_run', 'Dagster run id of the load that replaced it.'),
        ('ov_aire_history', 'id', 'Surrogate key of the row (identity; SERIAL in tables adopted from the old system).'),
        ('ov_aire_history', 'numero_radicado', 'Filing number the portal assigned: identifies the PQR within its empresa.'),
        ('ov_aire_history', 'fecha', 'Filing time shown by the portal, Bogotá local time; its day is the PQR''s partition.'),
        ('ov_aire_history', 'nic', 'NIC (Número de Identificación del Cliente): the electricity account the PQR is about. 5-12 digits expected (warning nic_invalid otherwise).'),
        ('ov_aire_history', 'documento_identidad', 'Identity document of the customer (cédula, or NIT as digits-DV).'),
        ('ov_aire_history', 'nombres_apellidos', 'Full name of the customer.'),
        ('ov_aire_history', 'lectura', 'Meter reading the customer reported, as typed (free text).'),
        ('ov_aire_history', 'correo_electronico', 'E-mail address of the customer.'),
        ('ov_aire_history', 'telefono', 'Landline phone of the customer, as typed.'),
        ('ov_aire_history', 'celular', 'Mobile phone of the customer, as typed.'),
        ('ov_aire_history', 'tipo_pqr', 'PQR type chosen on the portal (petición, queja, reclamo, ...).'),
        ('ov_aire_history', 'canal_respuesta', 'Channel through which the customer asked to be answered.'),
        ('ov_aire_history', 'documento_prueba', 'Name of the evidence file the customer attached, as the portal shows it.'),
        ('ov_aire_history', 'cuerpo_reclamacion', 'Text of the complaint as the customer wrote it (free text).'),
        ('ov_aire_history', 'estado_solicitud', 'Status of the PQR on the portal at extraction time (e.g. Finalizado).'),
        ('ov_aire_history', 'finalizar', 'The portal''s ''Finalizar'' field as shown (free text, usually empty).'),
        ('ov_aire_history', 'adjuntar_archivo', 'Name of a further file the customer attached, as the portal shows it.'),
        ('ov_aire_history', 'numero_reclamo_sgc', 'Claim number in the company''s SGC (commercial system); empty when the portal shows none.'),
        ('ov_aire_history', 'comentarios', 'Comments the portal shows on the PQR (free text).'),
        ('ov_aire_history', 'hash_registro', 'SHA-256 (hex) of the 18 canonical business fields (CONTRACT §4): any change of any field changes it.'),
        ('ov_aire_history', 'fecha_extraccion', 'Extraction time of the stored version, Bogotá local time (for rows adopted from the old system: its load time).'),
        ('ov_aire_history', 'archivo_origen', 'Landing file name of the stored version; NULL for rows adopted from the old system.'),
        ('ov_aire_history', 'warnings', 'JSON array of soft-rule codes (CONTRACT §4), e.g. ["email_invalid"].'),
        ('ov_aire_history', 'archivos_s3_urls', 'JSON array of the PQR''s stored files: {file_type, filename, s3_url, sha256} each.'),
        ('ov_aire_history', 'procesado_flag', 'TRUE once every file of the stored version is in the bucket.'),
        ('ov_aire_history', 'created_at', 'When ov-assets first inserted the row.'),
        ('ov_aire_history', 'updated_at', 'When the row last changed (a newer version, or its files stored).'),
        ('s3_files_registry', NULL, 'One row per object ov-assets stored (or found already stored) in the bucket (CONTRACT §6-§7).'),
        ('s3_files_registry', 'id', 'Surrogate key; the object''s registry_id metadata.'),
        ('s3_files_registry', 'empresa', 'afinia or aire.'),
        ('s3_files_registry', 'numero_radicado', 'The PQR the object belongs to (with empresa; never joined on the SGC). NULL only for an object adopted from the old system whose PQR is not known yet.'),
        ('s3_files_registry', 'numero_reclamo_sgc', 'The PQR''s SGC claim number (old rows may hold the radicado).'),
        ('s3_files_registry', 'filename', 'Landing file name of the object.'),
        ('s3_files_registry', 'file_type', 'json (the record), pdf (the detail page) or attachment.'),
        ('s3_files_registry', 'content_type', 'MIME type stored with the object.'),
        ('s3_files_registry', 'file_size', 'Size in bytes.'),
        ('s3_files_registry', 'file_hash', 'SHA-256 (hex) of the whole file.'),
        ('s3_files_registry', 's3_bucket', 'Bucket name (''local'' for the local object store).'),
        ('s3_files_registry', 's3_key', 'Object key (unique within the bucket).'),
        ('s3_files_registry', 's3_url', 's3://bucket/key (file://... for the local object store).'),
        ('s3_files_registry', 'upload_status', 'pending, uploaded, error or pre_existing (already there, same SHA-256).'),
        ('s3_files_registry', 'upload_source', 'bot, manual, pre_existing or migration.'),
        ('s3_files_registry', 'attempts', 'Upload attempts so far.'),
        ('s3_files_registry', 'last_error', 'The last upload error (no personal data).'),
        ('s3_files_registry', 'metadata', 'Bookkeeping of the upload (partition_date, layout, ...).'),
        ('s3_files_registry', 'created_at', 'When the row was registered.'),
        ('s3_files_registry', 'updated_at', 'When the row last changed.'),
        ('s3_files_registry', 'uploaded_at', 'When the object was stored or found stored.'),
        ('ov_rejects', NULL, 'Landing files or records that could not be loaded: one row per (empresa, file, reason) (CONTRACT §4).'),
        ('ov_rejects', 'id', 'Surrogate key.'),
        ('ov_rejects', 'empresa', 'afinia or aire.'),
        ('ov_rejects', 'partition_date', 'Partition day (the day of the PQRs'' fecha, Bogotá).'),
        ('ov_rejects', 'file_name', 'Landing file name.'),
        ('ov_rejects', 'file_sha256', 'SHA-256 (hex) of the file; NULL when it was rejected unread.'),
        ('ov_rejects', 'numero_radicado', 'The PQR''s radicado, when it could be read.'),
        ('ov_rejects', 'reason_code', 'Reject reason code (empty_file, invalid_json, missing_required, ...).'),
        ('ov_rejects', 'detail', 'What was wrong, naming the field, never its value.'),
        ('ov_rejects', 'first_seen_at', 'First load that saw the reject.'),
        ('ov_rejects', 'last_seen_at', 'Latest load that saw the reject.'),
        ('ov_rejects', 'resolved_at', 'When the same file name later loaded; NULL while still rejected.'),
        ('ov_load_audit', NULL, 'One row per partition and load run: what the load saw and did.'),
        ('ov_load_audit', 'id', 'Surrogate key.'),
        ('ov_load_audit', 'run_id', 'Dagster run id.'),
        ('ov_load_audit', 'empresa', 'afinia or aire.'),
        ('ov_load_audit', 'partition_date', 'Partition day (the day of the PQRs'' fecha, Bogotá).'),
        ('ov_load_audit', 'files_seen', 'Record files in the partition.'),
        ('ov_load_audit', 'records_valid', 'Valid versions (several per radicado possible).'),
        ('ov_load_audit', 'db_inserted', 'Rows inserted.'),
        ('ov_load_audit', 'db_updated', 'Rows replaced by a newer version (the old one went to history).'),
        ('ov_load_audit', 'db_duplicates', 'Winners already stored unchanged.'),
        ('ov_load_audit', 'rejected', 'Rejected files or records.'),
        ('ov_load_audit', 'started_at', 'When the load of the partition started.'),
        ('ov_load_audit', 'finished_at', 'When it committed.'),
        ('portal_request_slots', NULL, 'Rate limit shared by every extraction: the next free request slot per portal.'),
        ('portal_request_slots', 'portal', 'The portal''s base URL, without credentials.'),
        ('portal_request_slots', 'next_slot', 'The next time a rate-limited request may start.'),
        ('portal_request_slots', 'updated_at', 'When a slot was last taken.'),
        ('ov_report_exports', NULL, 'Loads whose consolidated reports the 23:45 archive has exported and verified.'),
        ('ov_report_exports', 'audit_id', 'The ov_load_audit row exported.'),
        ('ov_report_exports', 'empresa', 'afinia or aire.'),
        ('ov_report_exports', 'partition_date', 'Partition day (the day of the PQRs'' fecha, Bogotá).'),
        ('ov_report_exports', 'exported_at', 'When the export was verified.'),
        ('ov_cleaned_partitions', NULL, 'Partitions some of whose archived landing files the cleanup deleted (their reports are merged, never rebuilt).'),
        ('ov_cleaned_partitions', 'empresa', 'afinia or aire.'),
        ('ov_cleaned_partitions', 'partition_date', 'Partition day (the day of the PQRs'' fecha, Bogotá).'),
        ('ov_cleaned_partitions', 'first_cleaned_at', 'When the cleanup first deleted a file of it.')
        ) AS v(relation, column_name, description)
        JOIN pg_class c ON c.oid = to_regclass(format('data_general.%I', v.relation))
    LOOP
        IF d.column_name IS NULL THEN
            EXECUTE format('COMMENT ON %s data_general.%I IS %L',
                           CASE d.relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END, d.relation, d.description);
        ELSIF EXISTS (SELECT 1 FROM pg_attribute a
                      WHERE a.attrelid = d.oid AND a.attname = d.column_name AND a.attnum > 0
                        AND NOT a.attisdropped) THEN
            EXECUTE format('COMMENT ON COLUMN data_general.%I.%I IS %L', d.relation, d.column_name, d.description);
        END IF;
    END LOOP;
END $dictionary$;
-- END data dictionary
