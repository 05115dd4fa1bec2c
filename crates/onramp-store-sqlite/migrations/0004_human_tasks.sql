-- onramp schema: human tasks, CSRs and signals (issue 5). Named 0004 so that it merges beside
-- the outbox work's 0003; it is applied in file-name order after it.

CREATE TABLE csrs (
    id         TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,            -- JSON: name, email, skills, timezone, working_hours, ...
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE tasks (
    id              TEXT PRIMARY KEY,
    onboarding_id   TEXT NOT NULL REFERENCES onboardings(id),
    step_seq        INTEGER NOT NULL,
    task            TEXT NOT NULL,
    skill           TEXT NOT NULL,
    duration_ms     INTEGER NOT NULL,
    status          TEXT NOT NULL,       -- unassigned | assigned | done | cancelled
    csr_id          TEXT,
    scheduled_for   INTEGER,
    scheduled_until INTEGER,
    due_by          INTEGER,
    overdue_at      INTEGER,
    notes           TEXT,
    created_at      INTEGER NOT NULL,
    closed_at       INTEGER
) STRICT;
CREATE UNIQUE INDEX tasks_open_per_step ON tasks(onboarding_id, step_seq)
    WHERE status IN ('unassigned', 'assigned');
CREATE INDEX tasks_unassigned ON tasks(created_at, id) WHERE status = 'unassigned';
CREATE INDEX tasks_csr ON tasks(csr_id, scheduled_for);
CREATE INDEX tasks_due ON tasks(due_by) WHERE status IN ('unassigned', 'assigned') AND overdue_at IS NULL;

-- Signals sent to an onboarding, kept until a step waiting for that name takes one.
CREATE TABLE signals (
    onboarding_id TEXT NOT NULL REFERENCES onboardings(id),
    sender_id     TEXT NOT NULL,
    name          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    received_at   INTEGER NOT NULL,
    taken_by_seq  INTEGER,
    taken_at      INTEGER,
    PRIMARY KEY (onboarding_id, sender_id)
) STRICT, WITHOUT ROWID;

-- A waiting step with available_at is a timer (delay end, signal timeout).
CREATE INDEX steps_waiting ON steps(available_at) WHERE status = 'waiting';
