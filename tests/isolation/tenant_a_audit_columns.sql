-- run-as: tenant_a
-- The audit-column trigger in a tenant session (token with a user): whatever
-- the client sends, INSERT stores the session's user as created_by_id and
-- updated_by_id and now() as created_at and updated_at; UPDATE keeps
-- created_* and stamps updated_*. Here the client tries to backdate a row
-- and to name tenant B's user as its author. Rolled back at the end.
-- By hand: PGPASSWORD=$TOKEN_A psql -X -h 127.0.0.1 -p $PROXY_PORT -U app -d app -f tenant_a_audit_columns.sql

BEGIN;
INSERT INTO agent_instances (agent_id, agent_type, created_by_id, updated_by_id, created_at, updated_at)
VALUES ('backdated', 'chat', 'bbbbbbbb-0001-4000-8000-000000000001', 'bbbbbbbb-0001-4000-8000-000000000001',
        '2001-01-01', '2001-01-01')
RETURNING agent_id, created_by_id, updated_by_id,
          created_at = now() AS created_at_is_now, updated_at = now() AS updated_at_is_now;
UPDATE agent_instances
   SET created_by_id = 'bbbbbbbb-0001-4000-8000-000000000001', created_at = '2001-01-01',
       updated_by_id = 'bbbbbbbb-0001-4000-8000-000000000001', updated_at = '2001-01-01'
 WHERE agent_id = 'backdated'
RETURNING agent_id, created_by_id, updated_by_id,
          created_at = now() AS created_at_is_now, updated_at = now() AS updated_at_is_now;
ROLLBACK;
