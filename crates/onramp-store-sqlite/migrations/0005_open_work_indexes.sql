-- onramp schema: indexes over open work only, so that `/metrics` reads the same few rows on a
-- database with millions of finished onboardings (issue 8).

-- Replaces the full (stage, status) index: only the stage counts read it, and only for open
-- steps. Finished steps now leave the index instead of staying in it forever.
DROP INDEX steps_stage_status;
CREATE INDEX steps_open ON steps(stage, status)
    WHERE status IN ('queued', 'running', 'retrying', 'compensating');

CREATE INDEX tasks_open ON tasks(status, csr_id, due_by)
    WHERE status IN ('unassigned', 'assigned');
