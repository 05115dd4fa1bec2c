-- onramp schema, version 2: sagas. A step whose task has a `compensate` request is undone,
-- latest first, when its onboarding is cancelled; a compensating step without a lease is in
-- its stage's queue like a queued one.

ALTER TABLE onboardings ADD COLUMN on_failure TEXT NOT NULL DEFAULT 'hold';
ALTER TABLE templates ADD COLUMN on_failure TEXT NOT NULL DEFAULT 'hold';
ALTER TABLE steps ADD COLUMN compensable BOOLEAN NOT NULL DEFAULT false;

DROP INDEX steps_claimable;
CREATE INDEX steps_claimable ON steps (stage, priority DESC, available_at, id)
    WHERE status IN ('queued', 'retrying', 'compensating') AND lease_id IS NULL;
DROP INDEX steps_leased;
CREATE INDEX steps_leased ON steps (lease_expires_at) WHERE status IN ('running', 'compensating');
