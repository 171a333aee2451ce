-- Politeness per portal (issue 14): OV_SCRAPER_MAX_PER_MIN holds for one portal across every
-- concurrent run and step (schedules, sensors, UI launches, backfills). One row per portal (its
-- base URL, without credentials) holds the next free request slot; each rate-limited request
-- takes a slot by advancing it atomically and sleeps until then (ov_assets.portal.politeness).
-- No personal data: a URL and a time.

CREATE TABLE IF NOT EXISTS data_general.portal_request_slots (
    portal      TEXT PRIMARY KEY,
    next_slot   TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, UPDATE ON data_general.portal_request_slots TO ov_loader;
GRANT SELECT ON data_general.portal_request_slots TO ov_analyst;
