-- run-as: superuser
-- Contrib extensions installed after sql/ was applied: tablefunc, xml2 and
-- dblink run SQL given as text (out of the guard's sight), pgrowlocks and
-- pg_blocking_pids() show other backends.
--   1. A superuser's CREATE EXTENSION: the event trigger from
--      sql/40_hardening.sql revokes the functions at once.
--   2. With that trigger disabled: tenant.audit() reports each function the
--      login role can execute (and the trigger); re-applying
--      sql/40_hardening.sql, as sql/README.md says, repairs both.
--   3. A trusted extension (tablefunc) installed by a non-superuser, whose
--      REVOKE cannot work: a warning at install, the audit reports it, and
--      re-applying sql/40_hardening.sql as a superuser repairs it.
-- By hand: psql -X -d app -f admin_extensions.sql   (as a superuser, from tests/isolation)

-- 1.
CREATE EXTENSION tablefunc;
CREATE EXTENSION xml2;
CREATE EXTENSION dblink;
CREATE EXTENSION pgrowlocks;
SELECT * FROM tenant.audit();
SET ROLE proxy_login;
SELECT * FROM crosstab('SELECT 1::text, 1::text, 1::text') AS t(r text, c text);
SELECT * FROM connectby('users', 'id', 'organization_id', 'x', 0) AS t(id text, parent text, level int);
SELECT * FROM xpath_table('id', 'email', 'users', '/a', 'true') AS t(id text, v text);
SELECT dblink_connect('dbname=app');
SELECT * FROM dblink('dbname=app', 'SELECT 1') AS t(x int);
SELECT dblink_exec('dbname=app', 'SELECT 1');
SELECT * FROM pgrowlocks('users');
SELECT pg_blocking_pids(pg_backend_pid());
SELECT pg_safe_snapshot_blocking_pids(pg_backend_pid());
SELECT pg_isolation_test_session_is_blocked(pg_backend_pid(), '{}');
RESET ROLE;
DROP EXTENSION pgrowlocks;
DROP EXTENSION dblink;
DROP EXTENSION xml2;
DROP EXTENSION tablefunc;

-- 2.
ALTER EVENT TRIGGER tenant_revoke_extension_functions DISABLE;
CREATE EXTENSION tablefunc;
CREATE EXTENSION xml2;
CREATE EXTENSION dblink;
CREATE EXTENSION pgrowlocks;
SELECT severity, check_name, object_name FROM tenant.audit();
SELECT DISTINCT check_name, regexp_replace(detail, '^executable by [^:]*: ', '') AS why
  FROM tenant.audit() ORDER BY 1, 2;
-- What a tenant session could do with crosstab(): move itself to another
-- organization by a set_config inside the query text.
BEGIN;
SET LOCAL ROLE proxy_login;
SET LOCAL app.current_organization_id = 'aaaaaaaa-0000-4000-8000-000000000001';
SELECT * FROM crosstab($$SELECT 'r'::text, 'c'::text,
  set_config('app.current_organization_id', 'bbbbbbbb-0000-4000-8000-000000000001', true)$$) AS t(r text, c text);
SELECT current_setting('app.current_organization_id') AS now_pinned_to;
ROLLBACK;
-- The documented fix: re-apply the hardening file.
\! psql -X -q -v ON_ERROR_STOP=1 -d app -f ../../sql/40_hardening.sql && echo 40_hardening.sql applied
SELECT * FROM tenant.audit();
SELECT evtenabled FROM pg_event_trigger WHERE evtname = 'tenant_revoke_extension_functions';
DROP EXTENSION pgrowlocks;
DROP EXTENSION dblink;
DROP EXTENSION xml2;
DROP EXTENSION tablefunc;

-- 3.
CREATE ROLE extension_installer NOLOGIN;
GRANT CREATE ON DATABASE app TO extension_installer;
GRANT CREATE ON SCHEMA public TO extension_installer;
SET ROLE extension_installer;
CREATE EXTENSION tablefunc;
RESET ROLE;
SELECT severity, check_name, object_name FROM tenant.audit();
\! psql -X -q -v ON_ERROR_STOP=1 -d app -f ../../sql/40_hardening.sql && echo 40_hardening.sql applied
SELECT * FROM tenant.audit();
DROP EXTENSION tablefunc;
REVOKE CREATE ON SCHEMA public FROM extension_installer;
REVOKE CREATE ON DATABASE app FROM extension_installer;
DROP ROLE extension_installer;

SELECT * FROM tenant.audit();
