-- run-as: superuser
-- Where client-supplied audit columns are kept: only in a session with no
-- tenant context at all (neither app.current_organization_id nor
-- app.current_user_id set), such as a DBA's bulk load or a migration. With
-- either setting present (every proxied session has the organization), the
-- trigger stamps them. Rolled back at the end.
-- By hand: psql -X -d app -f admin_bulk_load.sql   (as a superuser)

BEGIN;
-- A bulk load keeps the historical values it supplies.
INSERT INTO agent_instances (organization_id, agent_id, agent_type, created_by_id, updated_by_id, created_at, updated_at)
VALUES ('aaaaaaaa-0000-4000-8000-000000000001', 'imported', 'chat',
        'aaaaaaaa-0001-4000-8000-000000000002', 'aaaaaaaa-0001-4000-8000-000000000002',
        '2001-01-01 00:00:00+00', '2002-02-02 00:00:00+00')
RETURNING agent_id, created_by_id, updated_by_id, created_at, updated_at;
-- The same statement in a session that carries a tenant context is stamped.
SET LOCAL app.current_organization_id = 'aaaaaaaa-0000-4000-8000-000000000001';
INSERT INTO agent_instances (organization_id, agent_id, agent_type, created_by_id, updated_by_id, created_at, updated_at)
VALUES ('aaaaaaaa-0000-4000-8000-000000000001', 'imported-in-tenant-session', 'chat',
        'aaaaaaaa-0001-4000-8000-000000000002', 'aaaaaaaa-0001-4000-8000-000000000002',
        '2001-01-01 00:00:00+00', '2002-02-02 00:00:00+00')
RETURNING agent_id, created_by_id, updated_by_id,
          created_at = now() AS created_at_is_now, updated_at = now() AS updated_at_is_now;
ROLLBACK;
