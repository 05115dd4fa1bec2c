-- onramp schema for PostgreSQL, version 1: the same tables and meanings as the SQLite schema.
-- Times are BIGINT milliseconds since the Unix epoch (UTC), as onramp_core::time::Millis.
-- Identifiers and names use COLLATE "C" so that ordering (cursors, "newest first") is byte
-- order on every database, whatever its default collation.
-- Migrations are append-only: never edit this file once released; add 0002_*.sql instead.

CREATE TABLE onboardings (
    id               TEXT COLLATE "C" PRIMARY KEY,
    customer         JSONB NOT NULL,
    customer_name    TEXT NOT NULL,
    customer_email   TEXT NOT NULL,
    customer_ref     TEXT,
    template_name    TEXT COLLATE "C",
    template_version INTEGER,
    status           TEXT NOT NULL CHECK (status IN
                         ('pending', 'running', 'waiting', 'failed', 'cancelling', 'cancelled',
                          'completed')),
    stage            TEXT COLLATE "C",
    current_seq      INTEGER NOT NULL,
    succeeded_steps  INTEGER NOT NULL DEFAULT 0,
    total_steps      INTEGER NOT NULL,
    priority         SMALLINT NOT NULL DEFAULT 0,
    error            TEXT,
    retry_available  BOOLEAN NOT NULL DEFAULT false,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    completed_at     BIGINT
);
CREATE INDEX onboardings_status ON onboardings (status, id);
CREATE INDEX onboardings_stage ON onboardings (stage, id);

-- A step row is also its queue entry: status queued/retrying with available_at is "in the
-- stage's queue"; running with a lease is "claimed".
CREATE TABLE steps (
    id               TEXT COLLATE "C" PRIMARY KEY,
    onboarding_id    TEXT COLLATE "C" NOT NULL REFERENCES onboardings (id),
    seq              INTEGER NOT NULL,
    task             TEXT NOT NULL,
    stage            TEXT COLLATE "C" NOT NULL,
    kind             TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN
                         ('pending', 'queued', 'running', 'retrying', 'waiting', 'succeeded',
                          'dead', 'skipped', 'compensating', 'compensated', 'cancelled')),
    priority         SMALLINT NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    available_at     BIGINT,
    queued_at        BIGINT,
    lease_id         BIGINT,
    lease_expires_at BIGINT,
    -- `json`, not `jsonb`: an external service's answer is kept exactly as given (jsonb
    -- refuses a \u0000 escape, which a service may well send).
    output           JSON,
    error            TEXT,
    assignee         TEXT,
    scheduled_for    BIGINT,
    started_at       BIGINT,
    finished_at      BIGINT,
    UNIQUE (onboarding_id, seq)
);
CREATE INDEX steps_claimable ON steps (stage, priority DESC, available_at, id)
    WHERE status IN ('queued', 'retrying');
CREATE INDEX steps_leased ON steps (lease_expires_at) WHERE status = 'running';
CREATE INDEX steps_stage_status ON steps (stage, status);

CREATE TABLE dead_letters (
    id            TEXT COLLATE "C" PRIMARY KEY,
    onboarding_id TEXT COLLATE "C" NOT NULL REFERENCES onboardings (id),
    step_seq      INTEGER NOT NULL,
    task          TEXT NOT NULL,
    stage         TEXT COLLATE "C" NOT NULL,
    attempts      INTEGER NOT NULL,
    error         TEXT NOT NULL,
    dead_at       BIGINT NOT NULL,
    resolved_at   BIGINT,
    resolution    TEXT
);
CREATE INDEX dead_letters_open ON dead_letters (stage, id) WHERE resolved_at IS NULL;
CREATE INDEX dead_letters_onboarding ON dead_letters (onboarding_id) WHERE resolved_at IS NULL;

-- One hash chain per onboarding. Writers lock the onboarding row before reading the chain's
-- head, so appends to one chain never interleave; the primary key would refuse a fork anyway.
CREATE TABLE audit (
    onboarding_id TEXT COLLATE "C" NOT NULL REFERENCES onboardings (id),
    seq           BIGINT NOT NULL,
    at            BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    from_state    TEXT,
    to_state      TEXT,
    -- `json`, not `jsonb`: the entry's hash covers this value, so it is kept exactly as
    -- written (jsonb would normalise numbers such as -0.0 and refuse \u0000).
    detail        JSON NOT NULL,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL,
    PRIMARY KEY (onboarding_id, seq)
);

CREATE FUNCTION onramp_audit_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'P0001';
END;
$$;
CREATE TRIGGER audit_is_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION onramp_audit_is_append_only();
CREATE TRIGGER audit_is_append_only_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION onramp_audit_is_append_only();

-- `position` follows commit order per onboarding (its writers hold the onboarding's row
-- lock), but not across onboardings: sequence values are taken at insert, not at commit, so
-- a reader must not treat "position > last seen" as "everything before is delivered".
CREATE TABLE outbox (
    position      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id            TEXT COLLATE "C" NOT NULL UNIQUE,
    type          TEXT NOT NULL,
    onboarding_id TEXT COLLATE "C" NOT NULL,
    at            BIGINT NOT NULL,
    data          JSONB NOT NULL
);

-- A create reserves its key first (response still NULL) and fills in the response in the
-- same transaction, so a committed row always has one; a concurrent create with the same key
-- waits on the reservation and then replays the committed response.
CREATE TABLE idempotency_keys (
    scope         TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    onboarding_id TEXT COLLATE "C" NOT NULL,
    response      JSONB,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE templates (
    name       TEXT COLLATE "C" NOT NULL,
    version    INTEGER NOT NULL,
    tasks      JSONB NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE tokens (
    name       TEXT COLLATE "C" PRIMARY KEY,
    role       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    csr_id     TEXT,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE stages (
    name       TEXT COLLATE "C" PRIMARY KEY,
    paused     BOOLEAN NOT NULL DEFAULT false,
    updated_at BIGINT NOT NULL
);
