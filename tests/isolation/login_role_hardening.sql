-- run-as: login_role
-- The database refuses the shared-role side channels by itself
-- (sql/40_hardening.sql), so a statement that slipped past the proxy's guard
-- still fails. Connected directly as proxy_login, with a valid organization
-- and a context proof for this connection (minted with key 1 as the proxy
-- would, for the client address and port the server sees), to show these
-- are privilege errors and not row filtering.
-- By hand (the script reconnects with the organization as a startup option):
--   PGPASSWORD=$LOGIN_PASSWORD psql -X -h 127.0.0.1 -p $PG_PORT -U proxy_login -d app -f login_role_hardening.sql
-- (with ISO_PROXY_BIN and ISO_KEY1_FILE set as tests/isolation/run.sh sets them)

\connect -reuse-previous=on "options='-c app.current_organization_id=aaaaaaaa-0000-4000-8000-000000000001'"
SELECT host(inet_client_addr()) AS client_addr, inet_client_port() AS client_port \gset
\set proof `"$ISO_PROXY_BIN" context-proof --context-key-file "$ISO_KEY1_FILE" --org aaaaaaaa-0000-4000-8000-000000000001 --client-addr :'client_addr' --client-port :'client_port'`
SELECT set_config('app.context_proof', :'proof', false) <> '' AS proof_set, tenant.context_status();
SELECT count(*) AS users FROM users;

-- Other sessions' SQL text and locks.
SELECT query FROM pg_stat_activity;
SELECT query FROM pg_stat_get_activity(NULL);
SELECT pg_stat_get_backend_activity(1);
SELECT * FROM pg_locks;
-- Signalling other sessions of the same role.
SELECT pg_cancel_backend(pg_backend_pid());
SELECT pg_terminate_backend(pg_backend_pid());
-- Large objects, server side and through the functions libpq's lo_* API calls.
SELECT lo_create(0);
SELECT lo_from_bytea(0, 'x');
SELECT lo_open(1, 262144);
-- Advisory locks, both key forms.
SELECT pg_advisory_lock(42);
SELECT pg_try_advisory_lock(1, 2);
SELECT pg_advisory_xact_lock_shared(42);
-- Releasing the session's own locks stays allowed: pools call it on release.
SELECT pg_advisory_unlock_all();
-- Functions that run SQL text out of the guard's sight.
SELECT query_to_xml('SELECT set_config(''app.current_organization_id'', ''bbbbbbbb-0000-4000-8000-000000000001'', false)', false, false, '');
SELECT * FROM ts_stat('SELECT to_tsvector(prompt) FROM content_generations');
-- Temporary objects (and so temporary functions), DO blocks.
CREATE TEMP TABLE scratch (x int);
CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1';
DO $$ BEGIN EXECUTE 'SET app.current_organization_id = ''bbbbbbbb-0000-4000-8000-000000000001'''; END $$;
-- No CREATE anywhere, no owner rights, no TRUNCATE.
CREATE TABLE public.t (x int);
CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE SCHEMA mine;
ALTER TABLE users DISABLE ROW LEVEL SECURITY;
DROP POLICY tenant_isolation ON users;
ALTER FUNCTION tenant.current_organization_id() IMMUTABLE;
TRUNCATE users;
SET ROLE tenant_owner;
SET SESSION AUTHORIZATION postgres;
-- row_security = off does not bypass the policies: PostgreSQL refuses the query.
SET row_security = off;
SELECT count(*) FROM users;
RESET row_security;
-- The DBA-only functions.
SELECT tenant.enable_isolation('users');
SELECT * FROM tenant.audit();

-- Still usable, still only A.
SELECT organization_id, count(*) FROM users GROUP BY 1;
