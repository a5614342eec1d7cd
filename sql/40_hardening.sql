-- 40_hardening.sql: database-side defence in depth for the proxy's guard.
--
-- Every tenant reaches PostgreSQL through one shared login role, so every
-- tenant session is "the same user" to PostgreSQL. Whatever PostgreSQL allows
-- a role to do to its own other sessions, one tenant could do to another:
-- read their SQL text, cancel or terminate them, open their large objects,
-- hold their advisory locks. The proxy's guard refuses these statements; this
-- file takes the privileges away as well, so a statement that slipped past the
-- guard's parser still fails here with "permission denied" (SQLSTATE 42501).
--
-- Most of these privileges are held by PUBLIC, not by tenant_app, so they are
-- revoked FROM PUBLIC and granted back to the predefined roles that exist for
-- exactly that purpose (pg_read_all_stats for monitoring, pg_signal_backend
-- for operators). Superusers are unaffected. Function privileges live in
-- each database's own catalog: apply this file in every database the proxy
-- serves.
--
-- What remains, and why the guard is still needed: set_config() and SET can
-- move a session to another organization's UUID, and PostgreSQL 15 offers no
-- privilege to stop either (see below). This file removes every way we know
-- to run them out of the guard's sight: DO blocks, temporary functions, and
-- functions that execute SQL text.
--
-- Deliberately NOT revoked (see sql/README.md, "What cannot be revoked"):
--   * set_config(): the guard must let set_config('application_name', ...)
--     through, and it is equivalent to the SET statement, which no privilege
--     controls for user-settable and placeholder (app.*) settings. Pinning the
--     tenant settings rests on the guard and on startup parameters being the
--     reset value; the helpers also fail closed on any non-UUID value.
--   * LISTEN/NOTIFY: no privilege governs them; revoking pg_notify() alone
--     would close nothing. The guard refuses or scopes them.
--   * current_setting(): the helpers run as the invoking role and need it.
--
-- Idempotent: REVOKE/GRANT of a privilege already in that state is a no-op.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;
BEGIN;

DO $do$
DECLARE
  fn regprocedure;
BEGIN
  -- 1. Other sessions' SQL text, client addresses and wait states. Shared by
  --    every session of the shared login role.
  FOREACH fn IN ARRAY ARRAY[
      'pg_catalog.pg_stat_get_activity(integer)',
      'pg_catalog.pg_stat_get_backend_idset()',
      'pg_catalog.pg_stat_get_backend_pid(integer)',
      'pg_catalog.pg_stat_get_backend_dbid(integer)',
      'pg_catalog.pg_stat_get_backend_userid(integer)',
      'pg_catalog.pg_stat_get_backend_activity(integer)',
      'pg_catalog.pg_stat_get_backend_activity_start(integer)',
      'pg_catalog.pg_stat_get_backend_xact_start(integer)',
      'pg_catalog.pg_stat_get_backend_start(integer)',
      'pg_catalog.pg_stat_get_backend_wait_event_type(integer)',
      'pg_catalog.pg_stat_get_backend_wait_event(integer)',
      'pg_catalog.pg_stat_get_backend_client_addr(integer)',
      'pg_catalog.pg_stat_get_backend_client_port(integer)',
      'pg_catalog.pg_lock_status()',
      -- Which backends block which: process ids and lock waits of other
      -- tenants' sessions (the isolation tester's helper included).
      'pg_catalog.pg_blocking_pids(integer)',
      'pg_catalog.pg_safe_snapshot_blocking_pids(integer)',
      'pg_catalog.pg_isolation_test_session_is_blocked(integer, integer[])']::regprocedure[]
  LOOP
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO pg_read_all_stats', fn);
  END LOOP;

  -- 2. Backend signalling. A role may cancel or terminate any backend of the
  --    same role, i.e. any other tenant's session.
  FOREACH fn IN ARRAY ARRAY[
      'pg_catalog.pg_cancel_backend(integer)',
      'pg_catalog.pg_terminate_backend(integer, bigint)']::regprocedure[]
  LOOP
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO pg_signal_backend', fn);
  END LOOP;

  -- 3. Large objects (server-side and the fast-path functions libpq's lo_*
  --    API calls). Large objects are owned by the creating role, which is
  --    shared, and sit outside row level security. lo_import/lo_export are
  --    superuser-only already; revoking again is harmless.
  -- 4. Advisory locks: one lock space per database, so a tenant could block
  --    or probe another tenant's application locks.
  FOR fn IN
    SELECT p.oid::regprocedure
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'pg_catalog'::regnamespace
       AND (p.proname IN ('lo_open', 'lo_close', 'loread', 'lowrite', 'lo_lseek',
                          'lo_lseek64', 'lo_creat', 'lo_create', 'lo_tell', 'lo_tell64',
                          'lo_truncate', 'lo_truncate64', 'lo_unlink', 'lo_from_bytea',
                          'lo_get', 'lo_put', 'lo_import', 'lo_export')
            OR (p.proname LIKE 'pg\_advisory\_%' AND p.proname NOT LIKE 'pg\_advisory\_unlock%')
            OR p.proname LIKE 'pg\_try\_advisory\_%')
     ORDER BY 1
  LOOP
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn);
  END LOOP;
  --    The unlock functions release only the calling session's own locks, and
  --    connection pools call them on release (asyncpg runs
  --    pg_advisory_unlock_all()): they stay executable (and are granted back
  --    where an earlier version of this file revoked them).
  FOR fn IN
    SELECT p.oid::regprocedure
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'pg_catalog'::regnamespace
       AND p.proname LIKE 'pg\_advisory\_unlock%'
     ORDER BY 1
  LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', fn);
  END LOOP;
END
$do$;

-- The views over those functions run with their owner's rights, so revoking
-- the functions alone would not hide them: revoke the views too.
REVOKE SELECT ON pg_catalog.pg_stat_activity FROM PUBLIC;
REVOKE SELECT ON pg_catalog.pg_locks         FROM PUBLIC;
GRANT  SELECT ON pg_catalog.pg_stat_activity TO pg_read_all_stats;
GRANT  SELECT ON pg_catalog.pg_locks         TO pg_read_all_stats;

-- pg_stat_statements, when installed, is readable by PUBLIC and shows the
-- SQL text of every session of the shared role.
DO $do$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_stat_statements') THEN
    EXECUTE (SELECT format('REVOKE SELECT ON %I.pg_stat_statements FROM PUBLIC', n.nspname)
               FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
              WHERE e.extname = 'pg_stat_statements');
  END IF;
END
$do$;

-- 5. TEMP on this database. Tenant sessions need no temporary objects, and
--    pg_temp is the one schema where tenant_app could still create functions
--    (and objects that shadow ordinary names on its search_path).
DO $do$
BEGIN
  EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', pg_catalog.current_database());
END
$do$;

-- 6. Functions that execute SQL passed to them as text: query_to_xml and
--    friends, ts_stat. The guard cannot see into a string, and inside one,
--    SELECT set_config('app.current_organization_id', ...) would move the
--    session to another tenant. The table/schema/database variants read whole
--    relations named at run time. Applications rarely use them; grant them to
--    a specific role if one does.
DO $do$
DECLARE
  fn regprocedure;
BEGIN
  FOR fn IN
    SELECT p.oid::regprocedure
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'pg_catalog'::regnamespace
       AND (p.proname IN ('query_to_xml', 'query_to_xmlschema', 'query_to_xml_and_xmlschema',
                          'table_to_xml', 'table_to_xmlschema', 'table_to_xml_and_xmlschema',
                          'schema_to_xml', 'schema_to_xmlschema', 'schema_to_xml_and_xmlschema',
                          'database_to_xml', 'database_to_xmlschema', 'database_to_xml_and_xmlschema',
                          'ts_stat'))
     ORDER BY 1
  LOOP
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn);
  END LOOP;
END
$do$;

-- 7. plpgsql. DO blocks need USAGE on their language, and a DO block is code
--    the guard's parser cannot see into (EXECUTE of a string built at run
--    time). Executing existing plpgsql functions (the audit-column trigger)
--    does not need USAGE, so nothing in sql/ breaks. tenant_owner keeps it so
--    the files can be applied as the owner role.
REVOKE USAGE ON LANGUAGE plpgsql FROM PUBLIC;
GRANT  USAGE ON LANGUAGE plpgsql TO tenant_owner;

-- 8. Contrib extensions whose functions run SQL given as text, or show other
--    backends, when they are installed in this database:
--      tablefunc  crosstab(), crosstab2/3/4(), connectby()   run SQL text
--      xml2       xpath_table()                              runs SQL text
--      dblink     dblink*()        run SQL text, on this server or another
--      pgrowlocks pgrowlocks()     shows which backends hold row locks
--    Inside such a string, SELECT set_config('app.current_organization_id',
--    ...) would move the session to another tenant out of the guard's sight.
--    EXECUTE is revoked from PUBLIC, from tenant_app and from each of its
--    members; grant a function back to a specific non-tenant role if needed.
--
--    An extension installed (or updated) later brings its functions with the
--    default EXECUTE for PUBLIC. The event trigger tenant_revoke_extension_functions
--    revokes them at the end of every CREATE EXTENSION / ALTER EXTENSION run by
--    a superuser. A non-superuser installing a trusted extension (tablefunc is
--    one) cannot revoke on the superuser-owned functions: re-apply this file
--    as a superuser then (it is idempotent). tenant.audit() reports any such
--    function a tenant role can execute, and a missing or disabled trigger.
--
--    The trigger function belongs to the superuser applying this file, never
--    to tenant_owner (it runs as whoever runs CREATE EXTENSION, a superuser,
--    so its owner must not be a role a migration login may hold), and it
--    calls no function by name (schema tenant belongs to tenant_owner, who
--    could otherwise put a function of its own in place of a callee). So the
--    loop is written twice, here and in the DO block below: keep them, and
--    the audit's risky_functions list in 50_audit.sql, the same.
CREATE OR REPLACE FUNCTION tenant.on_extension_change()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  fn   regprocedure;
  role text;
BEGIN
  FOR fn IN
    SELECT p.oid::regprocedure
      FROM pg_catalog.pg_proc p
      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
                                 AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
      JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
     WHERE (e.extname = 'tablefunc'  AND p.proname IN ('crosstab', 'crosstab2', 'crosstab3', 'crosstab4', 'connectby'))
        OR (e.extname = 'xml2'       AND p.proname = 'xpath_table')
        OR (e.extname = 'dblink'     AND p.proname LIKE 'dblink%')
        OR (e.extname = 'pgrowlocks' AND p.proname = 'pgrowlocks')
     ORDER BY 1
  LOOP
    IF NOT pg_catalog.current_setting('is_superuser')::boolean THEN
      -- A trusted extension installed by a non-superuser: its functions
      -- belong to the bootstrap superuser, so REVOKE would do nothing.
      IF pg_catalog.has_function_privilege('public', fn, 'EXECUTE') THEN
        RAISE WARNING '% runs SQL given as text or shows other backends, and every tenant can execute it', fn
          USING HINT = 'Re-apply sql/40_hardening.sql as a superuser, then check SELECT * FROM tenant.audit().';
      END IF;
      CONTINUE;
    END IF;
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn);
    FOR role IN
      WITH RECURSIVE tenant_roles(oid) AS (
          SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = 'tenant_app'
        UNION
          SELECT m.member FROM pg_catalog.pg_auth_members m JOIN tenant_roles t ON m.roleid = t.oid)
      SELECT r.rolname FROM tenant_roles t JOIN pg_catalog.pg_roles r ON r.oid = t.oid ORDER BY 1
    LOOP
      EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM %I', fn, role);
    END LOOP;
  END LOOP;
END
$fn$;
REVOKE ALL ON FUNCTION tenant.on_extension_change() FROM PUBLIC;

DO $do$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger WHERE evtname = 'tenant_revoke_extension_functions') THEN
    CREATE EVENT TRIGGER tenant_revoke_extension_functions ON ddl_command_end
      WHEN TAG IN ('CREATE EXTENSION', 'ALTER EXTENSION')
      EXECUTE FUNCTION tenant.on_extension_change();
  END IF;
END
$do$;
ALTER EVENT TRIGGER tenant_revoke_extension_functions ENABLE;

-- Extensions installed already.
DO $do$
DECLARE
  fn   regprocedure;
  role text;
BEGIN
  FOR fn IN
    SELECT p.oid::regprocedure
      FROM pg_catalog.pg_proc p
      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
                                 AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
      JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
     WHERE (e.extname = 'tablefunc'  AND p.proname IN ('crosstab', 'crosstab2', 'crosstab3', 'crosstab4', 'connectby'))
        OR (e.extname = 'xml2'       AND p.proname = 'xpath_table')
        OR (e.extname = 'dblink'     AND p.proname LIKE 'dblink%')
        OR (e.extname = 'pgrowlocks' AND p.proname = 'pgrowlocks')
     ORDER BY 1
  LOOP
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn);
    FOR role IN
      WITH RECURSIVE tenant_roles(oid) AS (
          SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = 'tenant_app'
        UNION
          SELECT m.member FROM pg_catalog.pg_auth_members m JOIN tenant_roles t ON m.roleid = t.oid)
      SELECT r.rolname FROM tenant_roles t JOIN pg_catalog.pg_roles r ON r.oid = t.oid ORDER BY 1
    LOOP
      EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM %I', fn, role);
    END LOOP;
  END LOOP;
END
$do$;

COMMIT;
