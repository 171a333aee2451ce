-- E.164 phones (issue 19): telefono_e164 and celular_e164, derived from telefono and celular by
-- phonenumbers (ov_assets/core/contacts.py) when the number is a valid Colombian (+57) one, NULL
-- when it is empty or invalid (the row then carries telefono_invalid / celular_invalid). They
-- are not business fields: hash_registro does not include them (CONTRACT §4), so adding them
-- changes no hash and no row is considered changed. The load writes them with every version;
-- the rows already stored are filled by code in this migration's transaction
-- (ov_assets.warehouse.derived.backfill_phone_e164, run by ov_assets.warehouse.migrations).
--
-- They are personal data: not in ov_pqr_masked; ov_analyst holds no right on the tables or
-- ov_pqr (008), ov_analyst_personal reads every column of them (table-level grants).

-- 1. The columns, in the current tables and in their history (a replaced version keeps its own).
ALTER TABLE data_general.ov_afinia
    ADD COLUMN IF NOT EXISTS telefono_e164 VARCHAR(16),
    ADD COLUMN IF NOT EXISTS celular_e164 VARCHAR(16);
ALTER TABLE data_general.ov_aire
    ADD COLUMN IF NOT EXISTS telefono_e164 VARCHAR(16),
    ADD COLUMN IF NOT EXISTS celular_e164 VARCHAR(16);
ALTER TABLE data_general.ov_afinia_history
    ADD COLUMN IF NOT EXISTS telefono_e164 VARCHAR(16),
    ADD COLUMN IF NOT EXISTS celular_e164 VARCHAR(16);
ALTER TABLE data_general.ov_aire_history
    ADD COLUMN IF NOT EXISTS telefono_e164 VARCHAR(16),
    ADD COLUMN IF NOT EXISTS celular_e164 VARCHAR(16);

-- 2. ov_pqr with the new columns appended (CREATE OR REPLACE VIEW may only add columns at the
--    end); ov_pqr_masked, built on it, is unchanged and still leaves every phone out.
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
       updated_at,
       telefono_e164,
       celular_e164
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
       updated_at,
       telefono_e164,
       celular_e164
FROM data_general.ov_aire;

-- 3. Rights: nothing to grant. ov_analyst_personal's SELECT on every table and view of
--    data_general covers the new columns; ov_analyst has none on these relations (008 revoked it),
--    and CREATE OR REPLACE VIEW keeps ov_pqr's grants as they were.

-- 4. Comments: none here. The data dictionary (ov_assets/core/dictionary.py) is applied after
--    the migrations by their repeatable step R_data_dictionary (ov_assets/warehouse/migrations.py).
