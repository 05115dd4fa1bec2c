-- onramp schema: the audit chain of administrative actions (issue 8): tokens created and
-- revoked, templates changed, CSRs created, changed and removed, stages paused and resumed,
-- webhooks added and removed. One chain for the whole installation, hashed like an
-- onboarding's (SPEC §9) and as append-only. Writers take a transaction-scoped advisory lock
-- before reading the chain's head, so appends never interleave.
CREATE TABLE admin_audit (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    from_state TEXT,
    to_state   TEXT,
    detail     JSON NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE TRIGGER admin_audit_is_append_only BEFORE UPDATE OR DELETE ON admin_audit
    FOR EACH ROW EXECUTE FUNCTION onramp_audit_is_append_only();
CREATE TRIGGER admin_audit_is_append_only_truncate BEFORE TRUNCATE ON admin_audit
    FOR EACH STATEMENT EXECUTE FUNCTION onramp_audit_is_append_only();
