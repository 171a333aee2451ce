-- What the 23:45 reports archive has exported (issue 21). Every ov_load_audit row is one load of
-- a partition; a load not listed here changed reports that are not in the bucket yet (a load
-- after 23:45, a partition the 03:00 re-extraction rewrote), so the next archive exports that
-- partition's consolidated reports and the audit export of the day the load finished, then
-- lists the load. Rows are added only after everything they stand for is stored and verified.
-- No personal data: ids, empresas, dates.

CREATE TABLE IF NOT EXISTS data_general.ov_report_exports (
    audit_id       BIGINT PRIMARY KEY,
    empresa        TEXT NOT NULL,
    partition_date DATE NOT NULL,
    exported_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT ON data_general.ov_report_exports TO ov_loader;
GRANT SELECT ON data_general.ov_report_exports TO ov_analyst;
