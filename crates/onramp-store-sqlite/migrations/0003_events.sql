-- onramp schema: live status, published events, webhook endpoints and event deliveries
-- (issue 6). Append-only like every migration.

-- Every visible change of an onboarding's status JSON (status, stage, progress, error,
-- retry), in order: what `GET /v1/onboardings/{id}/events` streams and resumes from. Triggers
-- write it in the transaction of the change, so no writer can forget it.
CREATE TABLE status_changes (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    onboarding_id   TEXT NOT NULL,
    status          TEXT NOT NULL,
    stage           TEXT,
    succeeded_steps INTEGER NOT NULL,
    total_steps     INTEGER NOT NULL,
    error           TEXT,
    retry_available INTEGER NOT NULL,
    at              INTEGER NOT NULL
) STRICT;
CREATE INDEX status_changes_onboarding ON status_changes(onboarding_id, seq);

CREATE TRIGGER status_changes_on_insert AFTER INSERT ON onboardings
BEGIN
    INSERT INTO status_changes (onboarding_id, status, stage, succeeded_steps, total_steps,
                                error, retry_available, at)
    VALUES (NEW.id, NEW.status, NEW.stage, NEW.succeeded_steps, NEW.total_steps, NEW.error,
            NEW.retry_available, NEW.updated_at);
END;

CREATE TRIGGER status_changes_on_update AFTER UPDATE ON onboardings
WHEN OLD.status IS NOT NEW.status OR OLD.stage IS NOT NEW.stage
  OR OLD.succeeded_steps IS NOT NEW.succeeded_steps OR OLD.total_steps IS NOT NEW.total_steps
  OR OLD.error IS NOT NEW.error OR OLD.retry_available IS NOT NEW.retry_available
BEGIN
    INSERT INTO status_changes (onboarding_id, status, stage, succeeded_steps, total_steps,
                                error, retry_available, at)
    VALUES (NEW.id, NEW.status, NEW.stage, NEW.succeeded_steps, NEW.total_steps, NEW.error,
            NEW.retry_available, NEW.updated_at);
END;

-- Onboardings from before this migration start their history with their current status.
INSERT INTO status_changes (onboarding_id, status, stage, succeeded_steps, total_steps, error,
                            retry_available, at)
SELECT id, status, stage, succeeded_steps, total_steps, error, retry_available, updated_at
FROM onboardings ORDER BY created_at, id;

-- `seq` is an event's place in publication order, set by the dispatcher (gapless from 1).
ALTER TABLE outbox ADD COLUMN seq INTEGER;
CREATE UNIQUE INDEX outbox_seq ON outbox(seq) WHERE seq IS NOT NULL;
CREATE INDEX outbox_unpublished ON outbox(position) WHERE seq IS NULL;

CREATE TABLE webhooks (
    id         TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,          -- JSON array of event types
    secret     TEXT NOT NULL,          -- whsec_...; needed in clear to sign
    created_at INTEGER NOT NULL
) STRICT;

-- One event on its way to one target (a webhook id, or `amqp`). A delivery row is also its
-- queue entry, exactly like a step: pending/retrying with available_at, sending with a lease.
CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    target           TEXT NOT NULL,
    event_seq        INTEGER NOT NULL,   -- outbox.seq
    onboarding_id    TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    available_at     INTEGER,
    lease_id         INTEGER,
    lease_expires_at INTEGER,
    window_start     INTEGER,            -- first claim (or replay): the retry window opens
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (target, event_seq)
) STRICT;
CREATE INDEX deliveries_open ON deliveries(target, onboarding_id, event_seq)
    WHERE status IN ('pending', 'sending', 'retrying');
CREATE INDEX deliveries_due ON deliveries(target, event_seq)
    WHERE status IN ('pending', 'sending', 'retrying');
CREATE INDEX deliveries_by_target ON deliveries(target, status, id);
