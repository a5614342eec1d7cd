-- run-as: tenant_a
-- Side channels of the shared database role, refused with SQLSTATE 42501.
-- Through the proxy the guard usually refuses first; the database refuses the
-- same statements on its own (40_hardening.sql, row level security, ownership),
-- see login_role_hardening.sql. Only the SQLSTATE is shown here, so this
-- script passes whichever layer answers.
-- By hand: PGPASSWORD=$TOKEN_A psql -X -h 127.0.0.1 -p $PROXY_PORT -U app -d app -f side_channels.sql

\set VERBOSITY sqlstate
-- Other sessions' SQL text.
SELECT query FROM pg_stat_activity;
SELECT * FROM pg_stat_get_activity(NULL);
SELECT pg_stat_get_backend_activity(1);
SELECT * FROM pg_locks;
-- Signalling other sessions of the same role.
SELECT pg_cancel_backend(pg_backend_pid());
SELECT pg_terminate_backend(pg_backend_pid());
-- Large objects.
SELECT lo_create(0);
SELECT lo_get(1);
-- Advisory locks.
SELECT pg_advisory_lock(42);
SELECT pg_try_advisory_xact_lock(1, 2);
-- Functions that run SQL text out of the guard's sight.
SELECT query_to_xml('SELECT set_config(''app.current_organization_id'', ''bbbbbbbb-0000-4000-8000-000000000001'', false)', false, false, '');
SELECT * FROM ts_stat('SELECT to_tsvector(prompt) FROM content_generations');
-- Temporary objects, DO blocks, functions, tables.
CREATE TEMP TABLE scratch (x int);
DO $$ BEGIN PERFORM 1; END $$;
CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE TABLE public.t (x int);
-- Role changes and owner-only operations.
SET ROLE tenant_owner;
SET SESSION AUTHORIZATION postgres;
ALTER TABLE users DISABLE ROW LEVEL SECURITY;
ALTER TABLE users NO FORCE ROW LEVEL SECURITY;
DROP POLICY tenant_isolation ON users;
TRUNCATE users;
\set VERBOSITY default

-- The session is unharmed and still sees only A.
SELECT tenant.current_organization_id() AS organization, count(*) AS users FROM users;
