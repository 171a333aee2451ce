-- Near-duplicate PQRs (issue 19): the same customer (NIC or identity document) filing a similar
-- complaint again within a few days under a new radicado. Each pair once (numero_radicado <
-- other_radicado). Found after each load by ov_assets/warehouse/near_duplicates.py (candidates
-- by SQL, scored by rapidfuzz in ov_assets/core/near_duplicates.py); the asset check
-- near_duplicates reports counts only. Radicados are not personal data; no text is stored.
CREATE TABLE IF NOT EXISTS data_general.ov_near_duplicates (
    empresa         TEXT NOT NULL,
    numero_radicado VARCHAR(50) NOT NULL,
    other_radicado  VARCHAR(50) NOT NULL,
    days_apart      INTEGER NOT NULL,
    similarity      DOUBLE PRECISION NOT NULL,
    rule            TEXT NOT NULL,
    found_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (empresa, numero_radicado, other_radicado),
    CHECK (numero_radicado < other_radicado COLLATE "C")
);
CREATE INDEX IF NOT EXISTS ov_near_duplicates_other_idx
    ON data_general.ov_near_duplicates (empresa, other_radicado);

-- The load (ov_loader) refreshes the pairs of the PQRs it compared: a pair that no longer holds
-- (a newer version reworded the complaint) is deleted. That is the only table it may delete from:
-- the pairs are derived and found again from ov_afinia / ov_aire at any load.
GRANT SELECT, INSERT, UPDATE, DELETE ON data_general.ov_near_duplicates TO ov_loader;
GRANT SELECT ON data_general.ov_near_duplicates TO ov_analyst, ov_analyst_personal;

-- Comments: none here. The data dictionary (ov_assets/core/dictionary.py) is applied after the
-- migrations by their repeatable step R_data_dictionary (ov_assets/warehouse/migrations.py).
