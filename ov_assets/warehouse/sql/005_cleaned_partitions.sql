-- Partitions some of whose archived landing files the cleanup deleted (issue 21). Their
-- consolidated reports are merged with the ones written before, never rebuilt from what is
-- left in the landing folder. Kept here, not only in the landing index: that is a local SQLite
-- file, deleted or rebuilt at will, and a lost mark brought back reports rewritten from what
-- the cleanup left. No personal data: an empresa and a day.
CREATE TABLE IF NOT EXISTS data_general.ov_cleaned_partitions (
    empresa        TEXT NOT NULL,
    partition_date DATE NOT NULL,
    first_cleaned_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (empresa, partition_date)
);
-- The cleanup (run as ov_loader) adds marks; nothing ever removes one.
GRANT SELECT, INSERT ON data_general.ov_cleaned_partitions TO ov_loader;
