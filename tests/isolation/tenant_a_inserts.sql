-- run-as: tenant_a
-- Inserts take the session's organization and user: the application sends
-- neither organization_id nor created_by_id ("do not include organization_id
-- in create models"). Updates stamp updated_by_id/updated_at; created_by_id and
-- created_at cannot be rewritten. Rolled back at the end.
-- By hand: PGPASSWORD=$TOKEN_A psql -X -h 127.0.0.1 -p $PROXY_PORT -U app -d app -f tenant_a_inserts.sql

\set ON_ERROR_ROLLBACK on
BEGIN;

-- The minimum inserts of the contract.
INSERT INTO users (email) VALUES ('new.teacher@acme.test')
RETURNING organization_id, email, created_by_id, updated_by_id, deleted_at;

INSERT INTO agent_instances (agent_id, agent_type, status) VALUES ('agent-new', 'tutor', 'pending')
RETURNING organization_id, agent_id, agent_type, status, configuration, created_by_id, updated_by_id,
          created_at IS NOT NULL AS has_created_at, deleted_at;

-- A few more tables, each with only its business columns.
INSERT INTO roblox_environments (user_id, name) VALUES ('aaaaaaaa-0001-4000-8000-000000000002', 'Acme Biology')
RETURNING organization_id, name, status, created_by_id;
INSERT INTO customers (email, stripe_customer_id) VALUES ('finance@acme.test', 'cus_new')
RETURNING organization_id, email, created_by_id;
INSERT INTO content_generations (user_id, content_type, prompt)
VALUES ('aaaaaaaa-0001-4000-8000-000000000001', 'quiz', 'Photosynthesis basics')
RETURNING organization_id, content_type, status, created_by_id;

-- A client cannot forge authorship: created_by_id is the session user.
INSERT INTO users (email, created_by_id, updated_by_id)
VALUES ('forged@acme.test', 'bbbbbbbb-0001-4000-8000-000000000001', 'bbbbbbbb-0001-4000-8000-000000000001')
RETURNING email, created_by_id, updated_by_id;

-- Updates stamp updated_by_id and updated_at; created_* are kept.
UPDATE agent_instances
   SET status = 'running', created_by_id = 'bbbbbbbb-0001-4000-8000-000000000001',
       created_at = '2000-01-01'
 WHERE agent_id = 'agent-a-only'
RETURNING agent_id, status, created_by_id, updated_by_id, created_at > '2000-01-01' AS created_at_kept,
          updated_at > created_at AS updated_at_moved;

-- The new rows are visible to this tenant, all in organization A.
SELECT organization_id, count(*) FROM users GROUP BY 1;

ROLLBACK;
