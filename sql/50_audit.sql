-- 50_audit.sql: tenant.audit(), the posture check DBAs run with psql:
--
--   SELECT * FROM tenant.audit();
--
-- One row per problem: severity ('critical' = tenant data can leak or be
-- written across tenants; 'warning' = weakened defence or broken setup),
-- check, object and detail. A database built only from sql/ returns no rows;
-- run it after every migration (tests/isolation/admin_audit.sql proves each
-- check fires).
--
-- "Tenant tables" are the tables registered by tenant.enable_isolation()
-- (tenant.isolated_tables). "Tenant roles" are tenant_app and every role that
-- is a member of it, directly or indirectly, found through pg_auth_members
-- (pg_has_role() would count every superuser as a member of every role).

\set ON_ERROR_STOP 1
SET client_min_messages = warning;
BEGIN;

CREATE OR REPLACE FUNCTION tenant.audit()
RETURNS TABLE (severity text, check_name text, object_name text, detail text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
WITH RECURSIVE
tenant_roles(oid) AS (
    SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = 'tenant_app'
  UNION
    SELECT m.member FROM pg_catalog.pg_auth_members m JOIN tenant_roles t ON m.roleid = t.oid
),
-- Tenant roles without SUPERUSER: a superuser has every privilege, and is
-- reported once as privileged_login_role instead of under every object.
tenant_roles_ns(oid) AS (
    SELECT t.oid FROM tenant_roles t JOIN pg_catalog.pg_roles r ON r.oid = t.oid WHERE NOT r.rolsuper
),
tables AS (
    SELECT c.oid, c.oid::regclass::text AS name, c.relrowsecurity, c.relforcerowsecurity,
           c.relowner, i.key_column, a.attnum AS key_attnum
      FROM tenant.isolated_tables i
      JOIN pg_catalog.pg_class c ON c.oid = i.table_name
      LEFT JOIN pg_catalog.pg_attribute a
             ON a.attrelid = c.oid AND a.attname = i.key_column AND NOT a.attisdropped
),
user_relations AS (
    SELECT c.oid, c.oid::regclass::text AS name, c.relkind, c.reloptions
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
       AND n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'
),
protected_settings(name) AS (
    VALUES ('app.current_organization_id'), ('app.current_user_id'), ('app.context_proof'),
           ('role'), ('session_authorization'), ('row_security'),
           ('standard_conforming_strings'), ('client_encoding'), ('backslash_quote')
),
side_channel_functions(fn) AS (
    SELECT p.oid::regprocedure
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'pg_catalog'::regnamespace
       AND (p.proname IN ('pg_stat_get_activity', 'pg_stat_get_backend_activity',
                          'pg_stat_get_backend_client_addr', 'pg_lock_status',
                          'pg_cancel_backend', 'pg_terminate_backend',
                          'lo_open', 'lo_creat', 'lo_create', 'lo_get', 'lo_put',
                          'lo_from_bytea', 'lo_unlink', 'loread', 'lowrite')
            OR p.proname LIKE 'pg\_advisory\_%' OR p.proname LIKE 'pg\_try\_advisory\_%'
            OR p.proname IN ('query_to_xml', 'query_to_xmlschema', 'query_to_xml_and_xmlschema', 'ts_stat'))
)
-- Tenant tables: row level security enabled and forced.
SELECT 'critical', 'rls_not_enabled', t.name,
       'row level security is disabled: every row is visible to every tenant'
  FROM tables t WHERE NOT t.relrowsecurity
UNION ALL
SELECT 'critical', 'rls_not_forced', t.name,
       'FORCE ROW LEVEL SECURITY is off: the owner bypasses the policies'
  FROM tables t WHERE NOT t.relforcerowsecurity
-- Tenant tables: the restrictive isolation policy (USING and WITH CHECK,
-- FOR ALL, TO PUBLIC, on the key column and the session helper).
UNION ALL
SELECT 'critical', 'no_isolation_policy', t.name,
       format('no RESTRICTIVE FOR ALL TO PUBLIC policy with USING and WITH CHECK on %I = (SELECT tenant.current_organization_id())',
              t.key_column)
  FROM tables t
 WHERE NOT EXISTS (
        SELECT FROM pg_catalog.pg_policy p
         WHERE p.polrelid = t.oid AND NOT p.polpermissive AND p.polcmd = '*'
           AND p.polroles = '{0}'::oid[]
           AND p.polqual IS NOT NULL AND p.polwithcheck IS NOT NULL
           AND pg_catalog.pg_get_expr(p.polqual, p.polrelid)
               = format('(%I = ( SELECT tenant.current_organization_id() AS current_organization_id))', t.key_column)
           AND pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)
               = format('(%I = ( SELECT tenant.current_organization_id() AS current_organization_id))', t.key_column))
UNION ALL
SELECT 'warning', 'no_access_policy', t.name,
       'no PERMISSIVE policy applies to tenant_app: tenant sessions see no rows at all'
  FROM tables t
 WHERE NOT EXISTS (
        SELECT FROM pg_catalog.pg_policy p
         WHERE p.polrelid = t.oid AND p.polpermissive
           AND (p.polroles && ARRAY[0::oid] OR p.polroles && ARRAY(SELECT oid FROM tenant_roles)))
-- Tenant tables: an index leading with the key column.
UNION ALL
SELECT 'warning', 'no_tenant_index', t.name,
       format('no valid, non-partial index leading with %I: every tenant query scans the whole table',
              t.key_column)
  FROM tables t
 WHERE NOT EXISTS (
        SELECT FROM pg_catalog.pg_index i
         WHERE i.indrelid = t.oid AND i.indisvalid AND i.indpred IS NULL
           AND i.indkey[0] = t.key_attnum)
-- Tenant tables: unique keys must include the key column, or constraint
-- errors reveal other tenants' values.
UNION ALL
SELECT 'critical', 'global_unique_key', t.name || ' ' || ic.relname,
       format('unique index %s does not include %I: its violations reveal other tenants'' keys',
              ic.relname, t.key_column)
  FROM tables t
  JOIN pg_catalog.pg_index i ON i.indrelid = t.oid AND i.indisunique
  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
 WHERE NOT (t.key_attnum = ANY (i.indkey::int2[]))
-- Tenant tables: owner and privileges.
UNION ALL
SELECT CASE WHEN t.relowner IN (SELECT oid FROM tenant_roles) THEN 'critical' ELSE 'warning' END,
       'owner_not_tenant_owner', t.name,
       format('owned by %s, not tenant_owner%s', t.relowner::regrole,
              CASE WHEN t.relowner IN (SELECT oid FROM tenant_roles)
                   THEN ': a tenant role owns it and can disable row level security' ELSE '' END)
  FROM tables t WHERE t.relowner <> 'tenant_owner'::regrole
UNION ALL
SELECT 'critical', 'tenant_privilege', t.name,
       format('%s held by %s (TRUNCATE ignores row level security; REFERENCES/TRIGGER are not for tenants)',
              priv, string_agg(r.oid::regrole::text, ', ' ORDER BY r.oid::regrole::text))
  FROM tables t
  CROSS JOIN tenant_roles_ns r
  CROSS JOIN unnest(ARRAY['TRUNCATE', 'REFERENCES', 'TRIGGER']) AS priv
 WHERE pg_catalog.has_table_privilege(r.oid, t.oid, priv)
   AND NOT pg_catalog.pg_has_role(r.oid, t.relowner, 'USAGE') -- reported as ownership instead
 GROUP BY t.name, priv
UNION ALL
SELECT 'critical', 'table_not_isolated', u.name,
       CASE WHEN u.relkind IN ('v', 'm')
            THEN 'a tenant role can read this view, which is not security_invoker and runs with its owner''s rights'
            ELSE 'a tenant role can access this table, which is not under tenant.enable_isolation()' END
  FROM user_relations u
 WHERE u.oid NOT IN (SELECT oid FROM tables)
   AND u.oid NOT IN ('tenant.context_keys'::regclass, 'tenant.context_settings'::regclass,
                     'tenant.context_key_list'::regclass) -- reported as context_exposed
   AND NOT (u.relkind = 'v' AND coalesce(u.reloptions, '{}') && ARRAY['security_invoker=true', 'security_invoker=on'])
   AND EXISTS (SELECT FROM tenant_roles_ns r
                WHERE pg_catalog.has_table_privilege(r.oid, u.oid, 'SELECT, INSERT, UPDATE, DELETE'))
UNION ALL
SELECT 'warning', 'table_not_isolated', u.name,
       'has an organization_id column but is not under tenant.enable_isolation()'
  FROM user_relations u
 WHERE u.relkind IN ('r', 'p') AND u.oid NOT IN (SELECT oid FROM tables)
   AND u.oid <> 'tenant.isolated_tables'::regclass
   AND NOT EXISTS (SELECT FROM tenant_roles_ns r
                    WHERE pg_catalog.has_table_privilege(r.oid, u.oid, 'SELECT, INSERT, UPDATE, DELETE'))
   AND EXISTS (SELECT FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = u.oid AND a.attname = 'organization_id' AND NOT a.attisdropped)
UNION ALL
SELECT 'warning', 'registered_table_missing', i.registered_name,
       'listed in tenant.isolated_tables but no longer exists'
  FROM tenant.isolated_tables i
 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = i.table_name)
-- Roles.
UNION ALL
SELECT CASE WHEN r.oid IN (SELECT oid FROM tenant_roles) THEN 'critical' ELSE 'warning' END,
       'privileged_login_role', r.rolname::text,
       concat_ws(', ', CASE WHEN r.rolsuper THEN 'SUPERUSER' END,
                       CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END)
       || ' and can log in: row level security does not apply to it'
       || CASE WHEN r.oid IN (SELECT oid FROM tenant_roles) THEN ' (and it is a tenant role)' ELSE '' END
  FROM pg_catalog.pg_roles r
 WHERE r.rolcanlogin AND (r.rolsuper OR r.rolbypassrls)
   AND r.oid <> 10  -- the bootstrap superuser exists in every cluster
UNION ALL
SELECT 'critical', 'privileged_tenant_role', r.rolname::text,
       'tenant role has SUPERUSER or BYPASSRLS (or CREATEROLE): row level security does not bind it'
  FROM pg_catalog.pg_roles r
 WHERE r.oid IN (SELECT oid FROM tenant_roles)
   AND (r.rolcreaterole  -- CREATEROLE can grant itself tenant_owner on PostgreSQL 15
        OR ((r.rolsuper OR r.rolbypassrls) AND NOT r.rolcanlogin))
UNION ALL
SELECT CASE WHEN g.rolsuper OR g.rolbypassrls OR g.oid = 'tenant_owner'::regrole
                 OR EXISTS (SELECT FROM tables t WHERE t.relowner = g.oid)
            THEN 'critical' ELSE 'warning' END,
       'tenant_role_membership', m.member::regrole::text,
       format('tenant role is also a member of %s, which a tenant session could SET ROLE to', g.rolname)
  FROM pg_catalog.pg_auth_members m
  JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
 WHERE m.member IN (SELECT oid FROM tenant_roles)
   AND m.roleid NOT IN (SELECT oid FROM tenant_roles)
   AND g.rolname <> 'tenant_app'
UNION ALL
SELECT 'critical', 'tenant_role_owns_objects', o.owner::regrole::text,
       format('tenant role owns %s %s; an owner can change its privileges and policies', o.kind, o.name)
  FROM (SELECT c.relowner AS owner, 'relation' AS kind, c.oid::regclass::text AS name
          FROM pg_catalog.pg_class c
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')  -- indexes and TOAST follow their table
        UNION ALL
        SELECT p.proowner, 'function', p.oid::regprocedure::text FROM pg_catalog.pg_proc p
        UNION ALL
        SELECT n.nspowner, 'schema', n.nspname::text FROM pg_catalog.pg_namespace n) o
 WHERE o.owner IN (SELECT oid FROM tenant_roles)
UNION ALL
SELECT 'warning', 'noinherit_login_role', r.rolname::text,
       'NOINHERIT member of tenant_app cannot use its privileges; run ALTER ROLE '
       || quote_ident(r.rolname) || ' SET role = ''tenant_app'''
  FROM pg_catalog.pg_roles r
 WHERE r.oid IN (SELECT oid FROM tenant_roles) AND r.rolcanlogin AND NOT r.rolinherit
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) AS cfg
                    WHERE s.setrole = r.oid
                      AND s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database
                                                 WHERE datname = pg_catalog.current_database()))
                      AND cfg = 'role=tenant_app')
-- Role and database settings that pin a protected or parser setting.
UNION ALL
SELECT 'critical', 'role_setting',
       concat_ws(' / ', CASE WHEN s.setrole <> 0 THEN 'role ' || s.setrole::regrole::text END,
                        CASE WHEN s.setdatabase <> 0 THEN 'database ' || d.datname::text END),
       format('ALTER ROLE/DATABASE ... SET %s: a protected or parser setting must come only from the proxy''s startup packet',
              cfg)
  FROM pg_catalog.pg_db_role_setting s
  LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
  CROSS JOIN unnest(s.setconfig) AS cfg
 WHERE lower(split_part(cfg, '=', 1)) IN (SELECT name FROM protected_settings)
   -- The documented recipe for NOINHERIT login roles is the one exception.
   AND NOT (cfg = 'role=tenant_app' AND s.setrole IN (SELECT oid FROM tenant_roles)
            AND s.setrole <> 'tenant_app'::regrole)
-- SECURITY DEFINER functions without a pinned search_path can be hijacked
-- through objects created earlier on the caller's path.
UNION ALL
SELECT 'critical', 'secdef_without_search_path', p.oid::regprocedure::text,
       'SECURITY DEFINER function without SET search_path'
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE p.prosecdef
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND NOT EXISTS (SELECT FROM unnest(p.proconfig) AS cfg WHERE cfg LIKE 'search\_path=%')
-- The session helpers must stay STABLE: an IMMUTABLE helper can be folded
-- into a cached plan and carry one tenant's value into another statement.
UNION ALL
SELECT 'critical', 'helper_volatility', p.oid::regprocedure::text,
       'session helper is not STABLE'
  FROM pg_catalog.pg_proc p
 WHERE p.oid IN ('tenant.current_organization_id()'::regprocedure, 'tenant.current_user_id()'::regprocedure,
                 'tenant.verified_context()'::regprocedure)
   AND p.provolatile <> 's'
-- The verified context (05_context.sql): on, with a key, keys unreadable.
UNION ALL
SELECT 'critical', 'context_verification_off', 'tenant.context_settings',
       'context verification is off (tenant.set_context_verification(false)): the policies trust '
       || 'app.* settings without a proof, so a guard bypass or a direct login as the login role can choose any tenant'
  FROM tenant.context_settings s WHERE s.verification IS FALSE
UNION ALL
SELECT 'warning', 'no_context_key', 'tenant.context_keys',
       'context verification is on and no key is installed: every tenant session sees no rows '
       || '(install the proxy''s key with tenant.add_context_key)'
 WHERE NOT EXISTS (SELECT FROM tenant.context_settings s WHERE s.verification IS FALSE)
   AND NOT EXISTS (SELECT FROM tenant.context_keys)
UNION ALL
SELECT 'critical', 'context_exposed', o.name,
       format('%s by %s: tenant sessions must not read or change context keys or settings',
              CASE o.kind WHEN 'table' THEN 'accessible' ELSE 'executable' END,
              string_agg(r.oid::regrole::text, ', ' ORDER BY r.oid::regrole::text))
  FROM (VALUES ('tenant.context_keys', 'table'), ('tenant.context_settings', 'table'),
               ('tenant.context_key_list', 'table'),
               ('tenant.add_context_key(text,text)', 'function'),
               ('tenant.remove_context_key(text)', 'function'),
               ('tenant.set_context_verification(boolean)', 'function')) AS o(name, kind)
  CROSS JOIN tenant_roles_ns r
 WHERE CASE o.kind
         WHEN 'table' THEN pg_catalog.has_table_privilege(r.oid, o.name, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
         ELSE pg_catalog.has_function_privilege(r.oid, o.name, 'EXECUTE') END
   AND NOT pg_catalog.pg_has_role(r.oid, 'tenant_owner', 'USAGE') -- reported as tenant_role_membership
 GROUP BY o.name, o.kind
-- Defence in depth from 40_hardening.sql still in place.
UNION ALL
SELECT 'warning', 'side_channel_privilege', f.fn::text,
       format('executable by %s (revoked by 40_hardening.sql): a shared-role side channel between tenants',
              string_agg(r.oid::regrole::text, ', ' ORDER BY r.oid::regrole::text))
  FROM side_channel_functions f CROSS JOIN tenant_roles_ns r
 WHERE pg_catalog.has_function_privilege(r.oid, f.fn, 'EXECUTE')
 GROUP BY f.fn
UNION ALL
SELECT 'warning', 'side_channel_privilege', v.name,
       format('readable by %s (revoked by 40_hardening.sql): other sessions'' SQL text or locks',
              string_agg(r.oid::regrole::text, ', ' ORDER BY r.oid::regrole::text))
  FROM (VALUES ('pg_catalog.pg_stat_activity'), ('pg_catalog.pg_locks')) v(name)
  CROSS JOIN tenant_roles_ns r
 WHERE pg_catalog.has_table_privilege(r.oid, v.name, 'SELECT')
 GROUP BY v.name
UNION ALL
SELECT 'warning', 'side_channel_privilege', 'database ' || pg_catalog.current_database(),
       format('%s can create temporary objects (TEMPORARY revoked by 40_hardening.sql)',
              string_agg(r.oid::regrole::text, ', ' ORDER BY r.oid::regrole::text))
  FROM tenant_roles_ns r
 WHERE pg_catalog.has_database_privilege(r.oid, pg_catalog.current_database(), 'TEMPORARY')
HAVING count(*) > 0
UNION ALL
SELECT 'warning', 'side_channel_privilege', 'language plpgsql',
       format('%s can run DO blocks (USAGE revoked by 40_hardening.sql)',
              string_agg(r.oid::regrole::text, ', ' ORDER BY r.oid::regrole::text))
  FROM tenant_roles_ns r
 WHERE pg_catalog.has_language_privilege(r.oid, 'plpgsql', 'USAGE')
HAVING count(*) > 0
ORDER BY 1, 2, 3, 4
$fn$;

ALTER FUNCTION tenant.audit() OWNER TO tenant_owner;
REVOKE ALL ON FUNCTION tenant.audit() FROM PUBLIC;
COMMENT ON FUNCTION tenant.audit() IS
  'Tenant isolation posture check: one row per problem; a correct database returns none.';

COMMIT;
