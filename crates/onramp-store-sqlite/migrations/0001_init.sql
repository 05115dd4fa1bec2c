-- onramp schema, version 1. Times are integer milliseconds since the Unix epoch (UTC).
-- Migrations are append-only: never edit this file once released; add 0002_*.sql instead.

CREATE TABLE onboardings (
    id               TEXT PRIMARY KEY,
    customer         TEXT NOT NULL,              -- JSON as given
    customer_name    TEXT NOT NULL,
    customer_email   TEXT NOT NULL,
    customer_ref     TEXT,
    template_name    TEXT,
    template_version INTEGER,
    status           TEXT NOT NULL,
    stage            TEXT,
    current_seq      INTEGER NOT NULL,
    succeeded_steps  INTEGER NOT NULL DEFAULT 0,
    total_steps      INTEGER NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    retry_available  INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    completed_at     INTEGER
) STRICT;
CREATE INDEX onboardings_status ON onboardings(status, id);
CREATE INDEX onboardings_stage ON onboardings(stage, id);

-- A step row is also its queue entry: status queued/retrying with available_at is "in the
-- stage's queue"; running with a lease is "claimed".
CREATE TABLE steps (
    id               TEXT PRIMARY KEY,
    onboarding_id    TEXT NOT NULL REFERENCES onboardings(id),
    seq              INTEGER NOT NULL,
    task             TEXT NOT NULL,
    stage            TEXT NOT NULL,
    kind             TEXT NOT NULL,
    status           TEXT NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    available_at     INTEGER,
    queued_at        INTEGER,
    lease_id         INTEGER,
    lease_expires_at INTEGER,
    output           TEXT,
    error            TEXT,
    assignee         TEXT,
    scheduled_for    INTEGER,
    started_at       INTEGER,
    finished_at      INTEGER,
    UNIQUE (onboarding_id, seq)
) STRICT;
CREATE INDEX steps_claimable ON steps(stage, priority DESC, available_at)
    WHERE status IN ('queued', 'retrying');
CREATE INDEX steps_leased ON steps(lease_expires_at) WHERE status = 'running';
CREATE INDEX steps_stage_status ON steps(stage, status);

CREATE TABLE dead_letters (
    id            TEXT PRIMARY KEY,
    onboarding_id TEXT NOT NULL REFERENCES onboardings(id),
    step_seq      INTEGER NOT NULL,
    task          TEXT NOT NULL,
    stage         TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    error         TEXT NOT NULL,
    dead_at       INTEGER NOT NULL,
    resolved_at   INTEGER,
    resolution    TEXT
) STRICT;
CREATE INDEX dead_letters_open ON dead_letters(stage, id) WHERE resolved_at IS NULL;
CREATE INDEX dead_letters_onboarding ON dead_letters(onboarding_id) WHERE resolved_at IS NULL;

CREATE TABLE audit (
    onboarding_id TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    from_state    TEXT,
    to_state      TEXT,
    detail        TEXT NOT NULL,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL,
    PRIMARY KEY (onboarding_id, seq)
) STRICT, WITHOUT ROWID;
CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

CREATE TABLE outbox (
    position      INTEGER PRIMARY KEY AUTOINCREMENT,   -- commit order
    id            TEXT NOT NULL UNIQUE,
    type          TEXT NOT NULL,
    onboarding_id TEXT NOT NULL,
    at            INTEGER NOT NULL,
    data          TEXT NOT NULL
) STRICT;

CREATE TABLE idempotency_keys (
    scope         TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    onboarding_id TEXT NOT NULL,
    response      TEXT NOT NULL,       -- the onboarding as first returned, JSON
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) STRICT, WITHOUT ROWID;

CREATE TABLE templates (
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    tasks      TEXT NOT NULL,          -- JSON array of task type names
    created_at INTEGER NOT NULL,
    PRIMARY KEY (name, version)
) STRICT, WITHOUT ROWID;

CREATE TABLE tokens (
    name       TEXT PRIMARY KEY,
    role       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    csr_id     TEXT,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;

CREATE TABLE stages (
    name       TEXT PRIMARY KEY,
    paused     INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
) STRICT;
