-- onramp schema for PostgreSQL: live status, published events, webhook endpoints and event
-- deliveries (issue 6); the same tables and meanings as the SQLite migration 0003.
-- Append-only like every migration.

-- Every visible change of an onboarding's status JSON, in order: what
-- `GET /v1/onboardings/{id}/events` streams and resumes from. Triggers write it in the
-- transaction of the change. `seq` is taken while the onboarding's row is locked (by the
-- UPDATE that fires the trigger), so within one onboarding it follows commit order.
CREATE TABLE status_changes (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    onboarding_id   TEXT COLLATE "C" NOT NULL,
    status          TEXT NOT NULL,
    stage           TEXT COLLATE "C",
    succeeded_steps INTEGER NOT NULL,
    total_steps     INTEGER NOT NULL,
    error           TEXT,
    retry_available BOOLEAN NOT NULL,
    at              BIGINT NOT NULL
);
CREATE INDEX status_changes_onboarding ON status_changes (onboarding_id, seq);

CREATE FUNCTION onramp_record_status_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR OLD.status IS DISTINCT FROM NEW.status OR OLD.stage IS DISTINCT FROM NEW.stage
       OR OLD.succeeded_steps IS DISTINCT FROM NEW.succeeded_steps
       OR OLD.total_steps IS DISTINCT FROM NEW.total_steps
       OR OLD.error IS DISTINCT FROM NEW.error
       OR OLD.retry_available IS DISTINCT FROM NEW.retry_available THEN
        INSERT INTO status_changes (onboarding_id, status, stage, succeeded_steps, total_steps,
                                    error, retry_available, at)
        VALUES (NEW.id, NEW.status, NEW.stage, NEW.succeeded_steps, NEW.total_steps, NEW.error,
                NEW.retry_available, NEW.updated_at);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER status_changes_on_write AFTER INSERT OR UPDATE ON onboardings
    FOR EACH ROW EXECUTE FUNCTION onramp_record_status_change();

-- Onboardings from before this migration start their history with their current status.
INSERT INTO status_changes (onboarding_id, status, stage, succeeded_steps, total_steps, error,
                            retry_available, at)
SELECT id, status, stage, succeeded_steps, total_steps, error, retry_available, updated_at
FROM onboardings ORDER BY created_at, id;

-- `seq` is an event's place in publication order. Publication runs under an advisory lock,
-- one process at a time, and hands out max(seq) + 1, ...: gapless, and a reader that has
-- seen seq n has seen everything before it (unlike `position`, taken at insert).
ALTER TABLE outbox ADD COLUMN seq BIGINT;
CREATE UNIQUE INDEX outbox_seq ON outbox (seq) WHERE seq IS NOT NULL;
CREATE INDEX outbox_unpublished ON outbox (position) WHERE seq IS NULL;

CREATE TABLE webhooks (
    id         TEXT COLLATE "C" PRIMARY KEY,
    url        TEXT NOT NULL,
    events     JSONB NOT NULL,        -- array of event types
    secret     TEXT NOT NULL,         -- whsec_...; needed in clear to sign
    created_at BIGINT NOT NULL
);

-- One event on its way to one target (a webhook id, or `amqp`). A delivery row is also its
-- queue entry, exactly like a step: pending/retrying with available_at, sending with a lease.
CREATE TABLE deliveries (
    id               TEXT COLLATE "C" PRIMARY KEY,
    target           TEXT COLLATE "C" NOT NULL,
    event_seq        BIGINT NOT NULL,
    onboarding_id    TEXT COLLATE "C" NOT NULL,
    status           TEXT NOT NULL CHECK (status IN
                         ('pending', 'sending', 'retrying', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    available_at     BIGINT,
    lease_id         BIGINT,
    lease_expires_at BIGINT,
    window_start     BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (target, event_seq)
);
CREATE INDEX deliveries_open ON deliveries (target, onboarding_id, event_seq)
    WHERE status IN ('pending', 'sending', 'retrying');
CREATE INDEX deliveries_due ON deliveries (target, event_seq)
    WHERE status IN ('pending', 'sending', 'retrying');
CREATE INDEX deliveries_by_target ON deliveries (target, status, id);
