-- run-as: tenant_a_service
-- The audit-column trigger in a tenant session whose token has no user
-- (no `sub`): authorship is NULL, never what the client supplies, so a
-- service token cannot name any user (tenant B's included) as an author;
-- timestamps are now(). Rolled back at the end.
-- By hand: PGPASSWORD=$TOKEN_A_SERVICE psql -X -h 127.0.0.1 -p $PROXY_PORT -U app -d app -f tenant_a_service_audit_columns.sql

SELECT current_setting('app.current_user_id') = '' AS no_session_user;
BEGIN;
INSERT INTO agent_instances (agent_id, agent_type, created_by_id, updated_by_id, created_at, updated_at)
VALUES ('service-made', 'chat', 'bbbbbbbb-0001-4000-8000-000000000001', 'aaaaaaaa-0001-4000-8000-000000000002',
        '2001-01-01', '2001-01-01')
RETURNING agent_id, organization_id, created_by_id, updated_by_id,
          created_at = now() AS created_at_is_now, updated_at = now() AS updated_at_is_now;
UPDATE agent_instances SET updated_by_id = 'bbbbbbbb-0001-4000-8000-000000000001', updated_at = '2001-01-01'
 WHERE agent_id = 'service-made'
RETURNING agent_id, updated_by_id, updated_at = now() AS updated_at_is_now;
ROLLBACK;
