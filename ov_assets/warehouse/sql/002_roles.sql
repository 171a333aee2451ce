-- Least-privilege roles (issue 4). Both are NOLOGIN group roles without passwords: an operator
-- creates the login users (on RDS: CREATE ROLE ... LOGIN PASSWORD ... or IAM auth) and grants
-- the group role to them, e.g.
--     CREATE ROLE ov_pipeline LOGIN PASSWORD '<from the secrets manager>' IN ROLE ov_loader;
--     CREATE ROLE maria LOGIN PASSWORD '<...>' IN ROLE ov_analyst;
-- Roles are cluster-wide: creating them is idempotent so every database of a server can run this.
--
-- ov_loader  : what the pipeline needs at run time (read, insert, update the ov-assets tables;
--              temporary staging tables; read schema_migrations to see that the schema is current).
--              No DDL, no DELETE, no TRUNCATE: migrations are applied by the schema owner with
--              `ov-assets migrate`.
-- ov_analyst : read-only access to data_general.

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['ov_loader', 'ov_analyst'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION
                WHEN duplicate_object THEN NULL;  -- created meanwhile by another database's migration
                WHEN insufficient_privilege THEN
                    RAISE EXCEPTION 'role % does not exist and % may not create roles', r, current_user
                        USING HINT = format('Ask a DBA to run: CREATE ROLE %I NOLOGIN; then rerun ov-assets migrate', r);
            END;
        END IF;
    END LOOP;
END $$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO ov_loader', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO ov_analyst', current_database());
END $$;

GRANT USAGE ON SCHEMA data_general TO ov_loader, ov_analyst;

-- Current state and files: read, insert, update (never delete).
GRANT SELECT, INSERT, UPDATE ON data_general.ov_afinia, data_general.ov_aire,
                                data_general.s3_files_registry, data_general.ov_rejects
    TO ov_loader;
-- History and audit are append-only.
GRANT SELECT, INSERT ON data_general.ov_afinia_history, data_general.ov_aire_history,
                        data_general.ov_load_audit
    TO ov_loader;
-- Adopted tables keep their SERIAL sequences (identity columns need no grant, serials do).
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA data_general TO ov_loader;
GRANT SELECT ON public.schema_migrations TO ov_loader, ov_analyst;

GRANT SELECT ON ALL TABLES IN SCHEMA data_general TO ov_analyst;
-- Tables later migrations create (as the same owner) are readable by analysts too; the loader's
-- grants on new tables are written explicitly by the migration that creates them.
ALTER DEFAULT PRIVILEGES IN SCHEMA data_general GRANT SELECT ON TABLES TO ov_analyst;
