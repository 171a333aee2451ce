-- Issue 21: what the least-privilege loader needs beyond 002_roles, and resolved rejects.

-- 1. The layout migration drops a registry row that another row supersedes (the object at the
--    target key is already registered: a pipeline run in the new layout came first, or a pending
--    row's key is taken). ov_loader has no DELETE (002_roles.sql), so it gets exactly this: a
--    function, run with its owner's rights, that deletes one row only when another row of the
--    same bucket holds the given key and either the row never held an object (not uploaded /
--    pre_existing) or the other row is done with the same SHA-256. Returns whether it deleted.
CREATE OR REPLACE FUNCTION data_general.ov_registry_drop_superseded(p_id BIGINT, p_key TEXT)
    RETURNS BOOLEAN
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM data_general.s3_files_registry r
        WHERE r.id = p_id
          AND EXISTS (
              SELECT 1 FROM data_general.s3_files_registry o
              WHERE o.s3_bucket = r.s3_bucket AND o.s3_key = p_key AND o.id <> r.id
                AND (r.upload_status NOT IN ('uploaded', 'pre_existing')
                     OR (o.upload_status IN ('uploaded', 'pre_existing') AND o.file_hash = r.file_hash)))
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM gone)
$$;
REVOKE ALL ON FUNCTION data_general.ov_registry_drop_superseded(BIGINT, TEXT) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION data_general.ov_registry_drop_superseded(BIGINT, TEXT) TO ov_loader;

-- 2. A reject stays as history when the same file name later loads (e.g. fixed in place): the
--    load sets resolved_at instead of deleting the row; a new rejection of it clears it again.
ALTER TABLE data_general.ov_rejects ADD COLUMN IF NOT EXISTS resolved_at TIMESTAMPTZ;
