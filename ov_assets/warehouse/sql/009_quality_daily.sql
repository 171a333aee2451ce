-- Quality over time (issue 19): one row per empresa and partition day with what the latest load
-- of the partition saw (files, valid, rejected by reason, warnings by code, reject rate) and how
-- long its newest stored versions waited between extraction and load. Written by the load in
-- its own transaction (ov_assets/warehouse/quality.py), so it always describes a committed load;
-- a rerun of the same files writes the same numbers. No personal data: counts and codes.
CREATE TABLE IF NOT EXISTS data_general.ov_quality_daily (
    empresa            TEXT NOT NULL,
    fecha              DATE NOT NULL,
    files_seen         INTEGER NOT NULL,
    valid              INTEGER NOT NULL,
    rejected           INTEGER NOT NULL,
    rejected_by_reason JSONB NOT NULL DEFAULT '{}'::jsonb,
    warnings_by_code   JSONB NOT NULL DEFAULT '{}'::jsonb,
    reject_rate        DOUBLE PRECISION NOT NULL,
    load_latency_s     DOUBLE PRECISION,
    loaded_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (empresa, fecha)
);

-- The load (ov_loader) upserts; analysts read it (no personal column).
GRANT SELECT, INSERT, UPDATE ON data_general.ov_quality_daily TO ov_loader;
GRANT SELECT ON data_general.ov_quality_daily TO ov_analyst, ov_analyst_personal;

-- Comments: none here. The data dictionary (ov_assets/core/dictionary.py) is applied after the
-- migrations by their repeatable step R_data_dictionary (ov_assets/warehouse/migrations.py).
