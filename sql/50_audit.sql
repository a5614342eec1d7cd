-- 50_audit.sql: tenant.audit(), the posture check DBAs run with psql:
--
--   SELECT * FROM tenant.audit();
--
-- One row per problem: severity ('critical' = tenant data can leak or be
-- written across tenants; 'warning' = weakened defence or broken setup),
-- check, object and detail. A database built only from sql/ returns no rows;
-- run it after every migration (tests/isolation/admin_audit.sql,
-- admin_audit_schema.sql and admin_extensions.sql prove each check fires).
--
-- "Tenant tables" are the tables registered by tenant.enable_isolation()
-- (tenant.isolated_tables). "Tenant roles" are tenant_app and every role that
-- is a member of it, directly or indirectly, found through pg_auth_members
-- (pg_has_role() would count every superuser as a member of every role).

\set ON_ERROR_STOP 1
SET client_min_messages = warning;
BEGIN;

-- tenant.audit_schema(): the checks on what DBAs add to the schema (keys,
-- exclusion constraints, partitions, grants, SECURITY DEFINER functions,
-- sequences, the audit-column trigger, contrib functions that run SQL text).
-- tenant.audit() includes its rows; call tenant.audit(), not this.
--
-- "Tenant relations" are the registered tables and every partition below
-- them: a partition's own unique index is checked by PostgreSQL for every
-- row routed through the parent, so it is an oracle like the parent's.
CREATE OR REPLACE FUNCTION tenant.audit_schema()
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
tenant_roles_ns(oid) AS (
    SELECT t.oid FROM tenant_roles t JOIN pg_catalog.pg_roles r ON r.oid = t.oid WHERE NOT r.rolsuper
),
tables AS (
    SELECT c.oid, c.oid::regclass::text AS name, c.relowner, c.relforcerowsecurity,
           i.key_column, i.tenant_privileges, a.attnum AS key_attnum
      FROM tenant.isolated_tables i
      JOIN pg_catalog.pg_class c ON c.oid = i.table_name
      LEFT JOIN pg_catalog.pg_attribute a
             ON a.attrelid = c.oid AND a.attname = i.key_column AND NOT a.attisdropped
),
-- Registered tables and their partitions, each with its own attnum of the key.
tenant_rels(oid, name, root, key_column, key_attnum, relforcerowsecurity, relowner) AS (
    SELECT t.oid, t.name, t.name, t.key_column, t.key_attnum, t.relforcerowsecurity, t.relowner FROM tables t
  UNION
    SELECT c.oid, c.oid::regclass::text, r.root, r.key_column, a.attnum, c.relforcerowsecurity, c.relowner
      FROM tenant_rels r
      JOIN pg_catalog.pg_inherits h ON h.inhparent = r.oid
      JOIN pg_catalog.pg_class c ON c.oid = h.inhrelid
      LEFT JOIN pg_catalog.pg_attribute a
             ON a.attrelid = c.oid AND a.attname = r.key_column AND NOT a.attisdropped
),
user_relations AS (
    SELECT c.oid, c.oid::regclass::text AS name, c.relkind,
           -- security_invoker as PostgreSQL reads it (true/on/yes/1, any case)
           c.relkind = 'v' AND coalesce((SELECT o.option_value::boolean
                                           FROM pg_catalog.pg_options_to_table(c.reloptions) o
                                          WHERE o.option_name = 'security_invoker'), false) AS invoker_view
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
       AND n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'
),
-- Installed functions that run SQL given as text (critical: set_config inside
-- the text moves the session to another tenant) or that show other backends.
risky_functions(fn, kind) AS (
    SELECT p.oid::regprocedure,
           CASE WHEN p.proname = 'pgrowlocks' THEN 'lock' ELSE 'sql_text' END
      FROM pg_catalog.pg_proc p
      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
                                 AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
      JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
     WHERE (e.extname = 'tablefunc'  AND p.proname IN ('crosstab', 'crosstab2', 'crosstab3', 'crosstab4', 'connectby'))
        OR (e.extname = 'xml2'       AND p.proname = 'xpath_table')
        OR (e.extname = 'dblink'     AND p.proname LIKE 'dblink%')
        OR (e.extname = 'pgrowlocks' AND p.proname = 'pgrowlocks')
  UNION ALL
    SELECT p.oid::regprocedure, 'lock'
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'pg_catalog'::regnamespace
       AND p.proname IN ('pg_blocking_pids', 'pg_safe_snapshot_blocking_pids',
                         'pg_isolation_test_session_is_blocked')
)
-- Unique keys whose key columns (INCLUDE columns do not count) lack the
-- tenant column, on tenant tables and on any of their partitions.
SELECT 'critical', 'global_unique_key', r.name || ' ' || ic.relname,
       format('unique index %s %s: its violations reveal other tenants'' keys. Fix: make %I a key column, e.g. UNIQUE (%I, ...)%s',
              ic.relname,
              CASE WHEN r.key_attnum = ANY (i.indkey::int2[])
                   THEN format('has %I only as an INCLUDE column', r.key_column)
                   ELSE format('does not include %I', r.key_column) END
              || CASE WHEN r.name <> r.root THEN format(' (on a partition of tenant table %s)', r.root) ELSE '' END,
              r.key_column, r.key_column,
              CASE WHEN r.name <> r.root THEN ', on the partitioned table itself' ELSE '' END)
  FROM tenant_rels r
  JOIN pg_catalog.pg_index i ON i.indrelid = r.oid AND i.indisunique
  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
 WHERE r.key_attnum IS NULL
    OR NOT (r.key_attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1]))
-- Exclusion constraints that do not compare the tenant column with =: a
-- conflict with another tenant's row reveals it, and blocks the insert.
UNION ALL
SELECT 'critical', 'global_exclusion_constraint', r.name || ' ' || c.conname,
       format('exclusion constraint %s does not compare %I WITH =: it conflicts with other tenants'' rows, revealing them and blocking inserts%s. Fix: add %I WITH = to it (GiST needs the btree_gist extension for =)',
              c.conname, r.key_column,
              CASE WHEN r.name <> r.root THEN format(' (on a partition of tenant table %s)', r.root) ELSE '' END,
              r.key_column)
  FROM tenant_rels r
  JOIN pg_catalog.pg_constraint c ON c.conrelid = r.oid AND c.contype = 'x'
 WHERE NOT EXISTS (
        SELECT FROM generate_subscripts(c.conkey, 1) k
          JOIN pg_catalog.pg_operator o ON o.oid = c.conexclop[k]
         WHERE c.conkey[k] = r.key_attnum AND o.oprname = '=')
-- Tenant tables: privileges of the tenant roles. Never TRUNCATE (ignores
-- row level security), REFERENCES or TRIGGER; of SELECT/INSERT/UPDATE/DELETE
-- exactly the set sql/ intends (tenant.isolated_tables.tenant_privileges),
-- column-level grants included.
UNION ALL
SELECT 'critical', 'tenant_privilege', t.name,
       format('%s held by %s%s',
              priv, string_agg(r.oid::regrole::text, ', ' ORDER BY r.oid::regrole::text),
              CASE WHEN priv IN ('TRUNCATE', 'REFERENCES', 'TRIGGER')
                   THEN ' (TRUNCATE ignores row level security; REFERENCES/TRIGGER are not for tenants)'
                   ELSE format(', but sql/ intends only %s: revoke it, or record it with tenant.set_tenant_privileges()',
                               array_to_string(t.tenant_privileges, ', ')) END)
  FROM tables t
  CROSS JOIN tenant_roles_ns r
  CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS priv
 WHERE priv <> ALL (t.tenant_privileges)
   AND (pg_catalog.has_table_privilege(r.oid, t.oid, priv)
        OR (priv IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
            AND pg_catalog.has_any_column_privilege(r.oid, t.oid, priv)))
   AND NOT pg_catalog.pg_has_role(r.oid, t.relowner, 'USAGE') -- reported as ownership instead
 GROUP BY t.name, t.tenant_privileges, priv
UNION ALL
SELECT 'warning', 'tenant_privilege', t.name,
       format('tenant_app lacks %s, which sql/ intends: run SELECT tenant.enable_isolation(%L, %L)',
              string_agg(priv, ', ' ORDER BY array_position(t.tenant_privileges, priv)), t.name, t.key_column)
  FROM tables t
  CROSS JOIN unnest(t.tenant_privileges) AS priv
 WHERE NOT pg_catalog.has_table_privilege('tenant_app', t.oid, priv)
 GROUP BY t.name, t.key_column, t.tenant_privileges
-- Relations outside isolation that a tenant role can reach, by table-level
-- or column-level privileges (views: unless security_invoker, which runs
-- them with the tenant's rights and policies).
UNION ALL
SELECT 'critical', 'table_not_isolated', u.name,
       CASE WHEN u.relkind IN ('v', 'm')
            THEN 'a tenant role can read this view, which is not security_invoker and runs with its owner''s rights. Fix: ALTER VIEW ... SET (security_invoker = true), or revoke'
            WHEN NOT EXISTS (SELECT FROM tenant_roles_ns r
                              WHERE pg_catalog.has_table_privilege(r.oid, u.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE'))
            THEN format('%s hold column privileges (GRANT ... (columns)) on this table, which is not under tenant.enable_isolation(): those columns are shared by all tenants. Fix: revoke them, or put the table under isolation',
                        (SELECT string_agg(r.oid::regrole::text, ', ' ORDER BY r.oid::regrole::text)
                           FROM tenant_roles_ns r
                          WHERE pg_catalog.has_any_column_privilege(r.oid, u.oid, 'SELECT, INSERT, UPDATE, REFERENCES')))
            ELSE 'a tenant role can access this table, which is not under tenant.enable_isolation()' END
  FROM user_relations u
 WHERE u.oid NOT IN (SELECT oid FROM tables)
   AND u.oid NOT IN ('tenant.context_keys'::regclass, 'tenant.context_settings'::regclass,
                     'tenant.context_key_list'::regclass) -- reported as context_exposed
   AND NOT u.invoker_view
   AND EXISTS (SELECT FROM tenant_roles_ns r
                WHERE pg_catalog.has_table_privilege(r.oid, u.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
                   OR pg_catalog.has_any_column_privilege(r.oid, u.oid, 'SELECT, INSERT, UPDATE, REFERENCES'))
UNION ALL
SELECT 'warning', 'table_not_isolated', u.name,
       'has an organization_id column but is not under tenant.enable_isolation()'
  FROM user_relations u
 WHERE u.relkind IN ('r', 'p') AND u.oid NOT IN (SELECT oid FROM tables)
   AND u.oid NOT IN (SELECT oid FROM tenant_rels)  -- partitions of a tenant table
   AND u.oid <> 'tenant.isolated_tables'::regclass
   AND NOT EXISTS (SELECT FROM tenant_roles_ns r
                    WHERE pg_catalog.has_table_privilege(r.oid, u.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
                       OR pg_catalog.has_any_column_privilege(r.oid, u.oid, 'SELECT, INSERT, UPDATE, REFERENCES'))
   AND EXISTS (SELECT FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = u.oid AND a.attname = 'organization_id' AND NOT a.attisdropped)
-- SECURITY DEFINER functions a tenant role can call whose owner is not bound
-- by row level security: the function twin of the owner-rights view.
UNION ALL
SELECT 'critical', 'secdef_bypasses_rls', p.oid::regprocedure::text,
       format('SECURITY DEFINER function executable by %s runs as %s, which %s: it reads and writes every tenant''s rows. Fix: REVOKE EXECUTE ... FROM PUBLIC (and the tenant roles), or make it SECURITY INVOKER',
              string_agg(r.oid::regrole::text, ', ' ORDER BY r.oid::regrole::text), o.rolname,
              CASE WHEN o.rolsuper THEN 'is a superuser'
                   WHEN o.rolbypassrls THEN 'has BYPASSRLS'
                   ELSE 'owns a tenant table without FORCE ROW LEVEL SECURITY' END)
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_catalog.pg_roles o ON o.oid = p.proowner
  CROSS JOIN tenant_roles_ns r
 WHERE p.prosecdef
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   -- The shipped verifier reads only the context key tables (reported by
   -- context_exposed if tenants can reach them) and returns the session's
   -- own organization and user.
   AND p.oid NOT IN ('tenant.verified_context()'::regprocedure, 'tenant.context_status()'::regprocedure)
   AND (o.rolsuper OR o.rolbypassrls
        OR EXISTS (SELECT FROM tenant_rels t
                    WHERE NOT t.relforcerowsecurity AND pg_catalog.pg_has_role(o.oid, t.relowner, 'USAGE')))
   AND pg_catalog.has_function_privilege(r.oid, p.oid, 'EXECUTE')
   AND pg_catalog.has_schema_privilege(r.oid, n.oid, 'USAGE')
 GROUP BY p.oid, o.rolname, o.rolsuper, o.rolbypassrls
-- Sequences: one counter for all tenants.
UNION ALL
SELECT 'critical', 'sequence_privilege', s.oid::regclass::text,
       format('%s held by %s: a sequence is one counter shared by all tenants (nextval/currval/last_value reveal how many rows others created; setval makes their inserts fail). Fix: use uuid keys (DEFAULT gen_random_uuid()) and revoke',
              string_agg(DISTINCT priv, ', '), string_agg(DISTINCT r.oid::regrole::text, ', '))
  FROM pg_catalog.pg_class s
  JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace
  CROSS JOIN tenant_roles_ns r
  CROSS JOIN unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) AS priv
 WHERE s.relkind = 'S'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND pg_catalog.has_sequence_privilege(r.oid, s.oid, priv)
 GROUP BY s.oid
UNION ALL
SELECT 'warning', 'sequence_key', t.name || '.' || quote_ident(a.attname),
       format('%s column: its values come from one sequence shared by all tenants, so the ids a tenant gets back reveal how many rows other tenants inserted. Fix: uuid DEFAULT gen_random_uuid(), as the shipped tables do',
              CASE WHEN a.attidentity <> '' THEN 'identity' ELSE 'serial (nextval default)' END)
  FROM tables t
  JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = t.oid AND d.adnum = a.attnum
 WHERE a.attidentity <> ''
    OR pg_catalog.pg_get_expr(d.adbin, d.adrelid) LIKE '%nextval(%'
-- The audit-column trigger: present, enabled, and stamping this table's
-- audit columns (on every partition too).
UNION ALL
SELECT 'warning', 'audit_trigger', r.name,
       CASE WHEN tg.oid IS NULL
            THEN 'no tenant_audit_columns trigger: clients can store any created_by_id/updated_by_id and backdated created_at/updated_at'
            WHEN tg.tgenabled = 'D'
            THEN 'the tenant_audit_columns trigger is disabled: clients can store any created_by_id/updated_by_id and backdated created_at/updated_at'
            WHEN tg.tgenabled = 'R'
            THEN 'the tenant_audit_columns trigger fires only in replica sessions: clients can store any created_by_id/updated_by_id and backdated created_at/updated_at'
            ELSE 'the tenant_audit_columns trigger is not tenant.stamp_audit_columns() BEFORE INSERT OR UPDATE FOR EACH ROW on this table''s audit columns'
       END || format('. Fix: SELECT tenant.enable_isolation(%L, %L)%s', r.root, r.key_column,
                     CASE WHEN tg.tgenabled IN ('D', 'R') THEN format(', or ALTER TABLE %s ENABLE TRIGGER tenant_audit_columns', r.name) ELSE '' END)
  FROM tenant_rels r
  CROSS JOIN LATERAL (
        SELECT array_agg(a.attname::text ORDER BY a.attname) AS cols
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = r.oid AND NOT a.attisdropped
           AND a.attname IN ('created_by_id', 'updated_by_id', 'created_at', 'updated_at')) ac
  LEFT JOIN pg_catalog.pg_trigger tg ON tg.tgrelid = r.oid AND tg.tgname = 'tenant_audit_columns'
 WHERE ac.cols IS NOT NULL
   AND (tg.oid IS NULL OR tg.tgenabled NOT IN ('O', 'A')
        OR tg.tgfoid <> 'tenant.stamp_audit_columns()'::regprocedure
        OR tg.tgtype <> (1 | 2 | 4 | 16)  -- ROW, BEFORE, INSERT, UPDATE
        OR encode(tg.tgargs, 'escape') <> array_to_string(ac.cols, '\000') || '\000')
-- Installed contrib functions that run SQL text or show other backends.
UNION ALL
SELECT CASE f.kind WHEN 'sql_text' THEN 'critical' ELSE 'warning' END,
       CASE f.kind WHEN 'sql_text' THEN 'sql_text_function' ELSE 'side_channel_privilege' END,
       f.fn::text,
       format('executable by %s: %s. Fix: re-apply sql/40_hardening.sql as a superuser',
              string_agg(r.oid::regrole::text, ', ' ORDER BY r.oid::regrole::text),
              CASE f.kind WHEN 'sql_text'
                   THEN 'it runs SQL given as text, out of the guard''s sight (set_config there moves the session to another tenant)'
                   ELSE 'it shows other sessions'' backends and locks, shared by all tenants' END)
  FROM risky_functions f
  JOIN pg_catalog.pg_proc p ON p.oid = f.fn
  CROSS JOIN tenant_roles_ns r
 WHERE pg_catalog.has_function_privilege(r.oid, f.fn, 'EXECUTE')
   AND pg_catalog.has_schema_privilege(r.oid, p.pronamespace, 'USAGE')
 GROUP BY f.fn, f.kind
-- The event trigger that revokes them when an extension is installed later.
UNION ALL
SELECT 'warning', 'extension_trigger', 'event trigger tenant_revoke_extension_functions',
       CASE WHEN e.oid IS NULL THEN 'missing' ELSE 'disabled' END
       || ': functions of an extension installed later that run SQL text stay executable by every tenant. Fix: re-apply sql/40_hardening.sql'
  FROM (SELECT 1) one
  LEFT JOIN pg_catalog.pg_event_trigger e ON e.evtname = 'tenant_revoke_extension_functions'
 WHERE e.oid IS NULL OR e.evtenabled NOT IN ('O', 'A')
$fn$;

ALTER FUNCTION tenant.audit_schema() OWNER TO tenant_owner;
REVOKE ALL ON FUNCTION tenant.audit_schema() FROM PUBLIC;

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
            OR (p.proname LIKE 'pg\_advisory\_%' AND p.proname NOT LIKE 'pg\_advisory\_unlock%')
            OR p.proname LIKE 'pg\_try\_advisory\_%'
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
-- Keys, exclusion constraints, privileges, relations outside isolation,
-- SECURITY DEFINER functions, sequences, the audit-column trigger and
-- functions that run SQL text: tenant.audit_schema() (above).
UNION ALL
SELECT * FROM tenant.audit_schema()
-- Tenant tables: owner and privileges.
UNION ALL
SELECT CASE WHEN t.relowner IN (SELECT oid FROM tenant_roles) THEN 'critical' ELSE 'warning' END,
       'owner_not_tenant_owner', t.name,
       format('owned by %s, not tenant_owner%s', t.relowner::regrole,
              CASE WHEN t.relowner IN (SELECT oid FROM tenant_roles)
                   THEN ': a tenant role owns it and can disable row level security' ELSE '' END)
  FROM tables t WHERE t.relowner <> 'tenant_owner'::regrole
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
   -- An extension's own function (dblink_connect_u) is not the DBA's to
   -- change; it is reported only when a tenant role can execute it.
   AND NOT (EXISTS (SELECT FROM pg_catalog.pg_depend d
                     WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
                       AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e')
            AND NOT EXISTS (SELECT FROM tenant_roles_ns r
                             WHERE pg_catalog.has_function_privilege(r.oid, p.oid, 'EXECUTE')))
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
