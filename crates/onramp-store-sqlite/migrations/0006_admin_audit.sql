-- onramp schema: the audit chain of administrative actions (issue 8): tokens created and
-- revoked, templates changed, CSRs created, changed and removed, stages paused and resumed,
-- webhooks added and removed. One chain for the whole installation, hashed like an
-- onboarding's (SPEC §9) and as append-only.
CREATE TABLE admin_audit (
    seq        INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    from_state TEXT,
    to_state   TEXT,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE TRIGGER admin_audit_is_append_only_update BEFORE UPDATE ON admin_audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER admin_audit_is_append_only_delete BEFORE DELETE ON admin_audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
