-- 10_helpers.sql: session-context helpers, the audit-column trigger, and
-- tenant.enable_isolation(), the one call that puts a table under isolation.
--
-- The proxy opens every upstream session with three startup parameters:
--   app.current_organization_id = <uuid>          (always)
--   app.current_user_id         = <uuid> or ''    (empty for service tokens)
--   app.context_proof           = its signature over both (05_context.sql)
-- A startup parameter is the session's reset value, so RESET/RESET ALL/
-- DISCARD ALL keep it. The helpers below turn those settings into uuid values,
-- and only when tenant.verified_context() accepts the proof.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;

-- Registry of isolated tables. enable_isolation() records each table and the
-- column that carries the tenant (organization_id, or id for organizations);
-- tenant.audit() uses it to know which tables to inspect.
CREATE TABLE IF NOT EXISTS tenant.isolated_tables (
    table_name  regclass PRIMARY KEY,
    key_column  name     NOT NULL,
    -- The name at registration, for reporting a table dropped since then
    -- (a dangling regclass prints as a bare OID).
    registered_name text NOT NULL,
    enabled_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
ALTER TABLE tenant.isolated_tables OWNER TO tenant_owner;
REVOKE ALL ON tenant.isolated_tables FROM PUBLIC;
COMMENT ON TABLE tenant.isolated_tables IS
  'Tables put under tenant isolation by tenant.enable_isolation(); read by tenant.audit().';

-- The privileges sql/ intends tenant_app to hold on each isolated table
-- (tenant.set_tenant_privileges() narrows them, e.g. organizations has no
-- DELETE). enable_isolation() grants exactly these, so calling it again never
-- gives back what was taken away, and tenant.audit() reports any difference.
-- Added with IF NOT EXISTS so databases built by an older sql/ gain it.
ALTER TABLE tenant.isolated_tables
  ADD COLUMN IF NOT EXISTS tenant_privileges text[] NOT NULL
      DEFAULT '{SELECT,INSERT,UPDATE,DELETE}'
      CONSTRAINT isolated_tables_tenant_privileges_check
      CHECK (tenant_privileges <@ '{SELECT,INSERT,UPDATE,DELETE}');

-- tenant.uuid_or_null(text): the text as uuid when it is a canonical UUID,
-- otherwise NULL. A regular-expression test rather than a cast inside an
-- exception block: no subtransaction per call, and garbage never raises (a
-- raising helper would let an attacker tell "garbage" from "no rows").
CREATE OR REPLACE FUNCTION tenant.uuid_or_null(value text)
RETURNS uuid
LANGUAGE sql
IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT CASE
           WHEN value OPERATOR(pg_catalog.~)
                '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$'
           THEN value::pg_catalog.uuid
         END
$fn$;

-- tenant.current_organization_id(): the session's organization, or NULL when
-- the setting is missing, empty (e.g. after RESET of a setting that had no
-- startup value) or not a UUID, or when app.context_proof does not verify
-- (missing, forged, expired, unknown key, or made for another connection).
-- NULL makes every policy false and every insert fail the NOT NULL default:
-- the database fails closed.
--
-- STABLE, never IMMUTABLE: an IMMUTABLE function may be folded into a cached
-- generic plan, which would then carry one tenant's value into another
-- statement. PARALLEL RESTRICTED: evaluated in the leader (policies call it
-- through an initPlan), while scans may still run in parallel workers.
--
-- Both helpers are one-line SQL functions without a SET clause, so the
-- planner inlines them: the policies' initPlan calls tenant.verified_context()
-- directly. Their body names only the schema-qualified verifier, so the
-- caller's search_path cannot redirect it; the verifier itself, which is
-- SECURITY DEFINER, has its search_path pinned.
CREATE OR REPLACE FUNCTION tenant.current_organization_id()
RETURNS uuid
LANGUAGE sql
STABLE PARALLEL RESTRICTED
AS $fn$
  SELECT (tenant.verified_context()).organization_id
$fn$;

-- tenant.current_user_id(): the session's end user, or NULL (service tokens,
-- DBA sessions, garbage, or a context that does not verify). Used for the
-- created_by_id/updated_by_id columns.
CREATE OR REPLACE FUNCTION tenant.current_user_id()
RETURNS uuid
LANGUAGE sql
STABLE PARALLEL RESTRICTED
AS $fn$
  SELECT (tenant.verified_context()).user_id
$fn$;

-- tenant.stamp_audit_columns(): BEFORE INSERT OR UPDATE row trigger.
-- TG_ARGV lists the audit columns the table actually has (enable_isolation()
-- passes them), so one function serves every table.
--   INSERT in a tenant session (app.current_organization_id or
--           app.current_user_id holds a UUID; every proxied session has the
--           organization): created_by_id/updated_by_id := session user, or
--           NULL for a token without a user; created_at/updated_at := now().
--           Whatever the client sent is overwritten: no forged authorship,
--           no backdated rows.
--   INSERT with neither setting (no tenant session at all: a DBA bulk load or
--           migration): the supplied values are kept; omitted ones take the
--           column defaults.
--   UPDATE: created_by_id/created_at are immutable; updated_by_id := session
--           user (or NULL), updated_at := now().
CREATE OR REPLACE FUNCTION tenant.stamp_audit_columns()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  uid   uuid  := tenant.current_user_id();
  -- A tenant session is one that carries a tenant or user setting at all,
  -- verified or not: only a session with neither (a DBA's load) keeps the
  -- values it supplies. An unverified one gets NULL authorship.
  tenant_session boolean := uid IS NOT NULL OR tenant.current_organization_id() IS NOT NULL
    OR nullif(current_setting('app.current_organization_id', true), '') IS NOT NULL
    OR nullif(current_setting('app.current_user_id', true), '') IS NOT NULL;
  patch jsonb := '{}'::jsonb;
  old_j jsonb;
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF tenant_session THEN
      IF 'created_by_id' = ANY (TG_ARGV) THEN
        patch := patch || jsonb_build_object('created_by_id', uid);
      END IF;
      IF 'updated_by_id' = ANY (TG_ARGV) THEN
        patch := patch || jsonb_build_object('updated_by_id', uid);
      END IF;
      IF 'created_at' = ANY (TG_ARGV) THEN
        patch := patch || jsonb_build_object('created_at', now());
      END IF;
      IF 'updated_at' = ANY (TG_ARGV) THEN
        patch := patch || jsonb_build_object('updated_at', now());
      END IF;
    END IF;
  ELSIF TG_OP = 'UPDATE' THEN
    old_j := to_jsonb(OLD);
    IF 'created_by_id' = ANY (TG_ARGV) THEN
      patch := patch || jsonb_build_object('created_by_id', old_j -> 'created_by_id');
    END IF;
    IF 'created_at' = ANY (TG_ARGV) THEN
      patch := patch || jsonb_build_object('created_at', old_j -> 'created_at');
    END IF;
    IF 'updated_by_id' = ANY (TG_ARGV) THEN
      patch := patch || jsonb_build_object('updated_by_id', uid);
    END IF;
    IF 'updated_at' = ANY (TG_ARGV) THEN
      patch := patch || jsonb_build_object('updated_at', now());
    END IF;
  END IF;
  IF patch <> '{}'::jsonb THEN
    NEW := jsonb_populate_record(NEW, patch);
  END IF;
  RETURN NEW;
END
$fn$;

-- tenant.enable_isolation(table, key_column): one call puts a table under
-- tenant isolation. Safe to call again at any time (it converges).
--   * key column: must exist as uuid; made NOT NULL; for organization_id the
--     default becomes tenant.current_organization_id(), so INSERTs that omit
--     it take the session's organization.
--   * audit columns, when present: created_by_id/updated_by_id default to the
--     session user, created_at/updated_at default to now(), and the
--     tenant_audit_columns trigger keeps them honest.
--   * ENABLE and FORCE row level security (FORCE: the owner is filtered too).
--   * policy tenant_isolation: RESTRICTIVE, FOR ALL, TO PUBLIC, USING and
--     WITH CHECK key = (SELECT tenant.current_organization_id()). Restrictive
--     and for everyone, so a permissive policy someone adds later can widen
--     access only within the tenant. WITH CHECK stops rows being inserted into,
--     or moved to, another organization.
--   * policy tenant_access: PERMISSIVE, TO tenant_app, same expression. Rows
--     are visible only if some permissive policy passes; roles other than
--     tenant_app get none and therefore see nothing.
--   * an index leading with the key column (created only if none exists; for
--     a large live table create it CONCURRENTLY first, see sql/README.md).
--   * grants: tenant_app gets the table's intended privileges (SELECT,
--     INSERT, UPDATE, DELETE unless tenant.set_tenant_privileges() narrowed
--     them; recorded in tenant.isolated_tables), loses the others, and never
--     holds TRUNCATE, REFERENCES or TRIGGER (TRUNCATE is not subject to RLS).
--   * owner: tenant_owner (an owner can switch RLS off, so it must be a
--     NOLOGIN role no tenant session can act as). Grant tenant_owner to your
--     migration role if it needs to ALTER the table afterwards.
-- The (SELECT ...) wrapper makes the planner evaluate the helper once per
-- statement (an initPlan) and compare the indexed column to a constant.
CREATE OR REPLACE FUNCTION tenant.enable_isolation(
    target     regclass,
    key_column name DEFAULT 'organization_id')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  rel        pg_catalog.pg_class%ROWTYPE;
  key_type   regtype;
  key_notnull boolean;
  expr       text := format('(%I = (SELECT tenant.current_organization_id()))', key_column);
  audit_cols text[];
  col        text;
  pol        record;
  idx_name   text;
  privs      text[];
BEGIN
  SELECT * INTO rel FROM pg_catalog.pg_class WHERE oid = target;
  IF rel.relkind NOT IN ('r', 'p') THEN
    RAISE EXCEPTION 'tenant.enable_isolation: % is not a table', target;
  END IF;

  SELECT a.atttypid::regtype, a.attnotnull INTO key_type, key_notnull
    FROM pg_catalog.pg_attribute a
   WHERE a.attrelid = target AND a.attname = key_column AND NOT a.attisdropped;
  IF key_type IS NULL THEN
    RAISE EXCEPTION 'tenant.enable_isolation: % has no column %', target, key_column
      USING HINT = format('ALTER TABLE %s ADD COLUMN %I uuid, backfill it, then call again.',
                          target, key_column);
  ELSIF key_type <> 'uuid'::regtype THEN
    RAISE EXCEPTION 'tenant.enable_isolation: %.% is %, expected uuid', target, key_column, key_type;
  END IF;

  -- Ownership: tenant_owner owns every tenant table. An owner can switch row
  -- level security off, so the owner must never be a role a tenant session
  -- can act as; one fixed NOLOGIN owner makes that easy to check.
  IF rel.relowner <> 'tenant_owner'::regrole THEN
    EXECUTE format('ALTER TABLE %s OWNER TO tenant_owner', target);
  END IF;

  IF NOT key_notnull THEN
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL', target, key_column);
  END IF;
  IF key_column = 'organization_id' THEN
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT tenant.current_organization_id()',
                   target, key_column);
  END IF;

  -- Audit columns that exist on this table.
  SELECT coalesce(array_agg(a.attname::text ORDER BY a.attname), '{}') INTO audit_cols
    FROM pg_catalog.pg_attribute a
   WHERE a.attrelid = target AND NOT a.attisdropped
     AND a.attname IN ('created_by_id', 'updated_by_id', 'created_at', 'updated_at');
  FOREACH col IN ARRAY audit_cols LOOP
    IF col IN ('created_by_id', 'updated_by_id') THEN
      EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT tenant.current_user_id()', target, col);
    ELSE
      EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT now()', target, col);
    END IF;
  END LOOP;
  IF cardinality(audit_cols) > 0 THEN
    -- Re-create only when missing or its arguments differ, so a second call
    -- changes nothing.
    IF NOT EXISTS (
         SELECT FROM pg_catalog.pg_trigger t
          WHERE t.tgrelid = target AND t.tgname = 'tenant_audit_columns' AND NOT t.tgisinternal
            AND t.tgfoid = 'tenant.stamp_audit_columns()'::regprocedure
            AND t.tgnargs = cardinality(audit_cols)
            AND encode(t.tgargs, 'escape') = array_to_string(audit_cols, '\000') || '\000') THEN
      IF EXISTS (SELECT FROM pg_catalog.pg_trigger t
                  WHERE t.tgrelid = target AND t.tgname = 'tenant_audit_columns') THEN
        EXECUTE format('DROP TRIGGER tenant_audit_columns ON %s', target);
      END IF;
      EXECUTE format('CREATE TRIGGER tenant_audit_columns BEFORE INSERT OR UPDATE ON %s '
                     'FOR EACH ROW EXECUTE FUNCTION tenant.stamp_audit_columns(%s)',
                     target,
                     (SELECT string_agg(quote_literal(c), ', ') FROM unnest(audit_cols) c));
    END IF;
  END IF;

  EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
  EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', target);

  -- Policies: ALTER when present with the right kind (keeps the catalog row),
  -- otherwise (re)create.
  FOR pol IN
    SELECT * FROM (VALUES ('tenant_isolation', false, 'PUBLIC'),
                          ('tenant_access',    true,  'tenant_app')) v(name, permissive, grantee)
  LOOP
    IF EXISTS (SELECT FROM pg_catalog.pg_policy p
                WHERE p.polrelid = target AND p.polname = pol.name
                  AND p.polpermissive = pol.permissive AND p.polcmd = '*') THEN
      EXECUTE format('ALTER POLICY %I ON %s TO %s USING %s WITH CHECK %s',
                     pol.name, target, pol.grantee, expr, expr);
    ELSE
      IF EXISTS (SELECT FROM pg_catalog.pg_policy p
                  WHERE p.polrelid = target AND p.polname = pol.name) THEN
        EXECUTE format('DROP POLICY %I ON %s', pol.name, target);
      END IF;
      EXECUTE format('CREATE POLICY %I ON %s AS %s FOR ALL TO %s USING %s WITH CHECK %s',
                     pol.name, target,
                     CASE WHEN pol.permissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                     pol.grantee, expr, expr);
    END IF;
  END LOOP;

  -- An index leading with the key column, unless one exists already (a
  -- primary key (organization_id, id) counts).
  IF NOT EXISTS (
       SELECT FROM pg_catalog.pg_index i
        WHERE i.indrelid = target AND i.indpred IS NULL AND i.indisvalid
          AND i.indkey[0] = (SELECT a.attnum FROM pg_catalog.pg_attribute a
                              WHERE a.attrelid = target AND a.attname = key_column)) THEN
    idx_name := left(rel.relname, 40) || '_' || key_column || '_idx';
    EXECUTE format('CREATE INDEX %I ON %s (%I)', idx_name, target, key_column);
  END IF;

  -- Exactly the intended privileges: a second call keeps what sql/ revoked.
  SELECT coalesce((SELECT i.tenant_privileges FROM tenant.isolated_tables i WHERE i.table_name = target),
                  '{SELECT,INSERT,UPDATE,DELETE}')
    INTO privs;
  EXECUTE format('REVOKE %s ON %s FROM tenant_app',
                 (SELECT string_agg(p, ', ') FROM unnest(ARRAY['TRUNCATE', 'REFERENCES', 'TRIGGER',
                                                                'SELECT', 'INSERT', 'UPDATE', 'DELETE']) p
                   WHERE p <> ALL (privs)),
                 target);
  IF cardinality(privs) > 0 THEN
    EXECUTE format('GRANT %s ON %s TO tenant_app', array_to_string(privs, ', '), target);
  END IF;

  INSERT INTO tenant.isolated_tables AS t (table_name, key_column, registered_name)
  VALUES (target, key_column, target::text)
  ON CONFLICT (table_name) DO UPDATE
     SET key_column = EXCLUDED.key_column, registered_name = EXCLUDED.registered_name
   WHERE (t.key_column, t.registered_name) IS DISTINCT FROM (EXCLUDED.key_column, EXCLUDED.registered_name);
END
$fn$;

-- tenant.set_tenant_privileges(table, privileges): narrow what tenant_app
-- may do on an isolated table, for good. Records the set in
-- tenant.isolated_tables and applies it through enable_isolation(), which
-- from then on grants exactly that set (so calling enable_isolation() again,
-- as sql/README.md shows, never gives a revoked privilege back). A plain
-- REVOKE would be undone by the next enable_isolation() call and is reported
-- by tenant.audit() as missing. Privileges: any of SELECT, INSERT, UPDATE,
-- DELETE. Example (30_isolation.sql):
--   SELECT tenant.set_tenant_privileges('public.organizations', '{SELECT,INSERT,UPDATE}');
CREATE OR REPLACE FUNCTION tenant.set_tenant_privileges(target regclass, privileges text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  wanted text[];
  key    name;
BEGIN
  IF EXISTS (SELECT FROM unnest(privileges) p
              WHERE p IS NULL OR upper(p) NOT IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')) THEN
    RAISE EXCEPTION 'tenant.set_tenant_privileges: privileges must be among SELECT, INSERT, UPDATE, DELETE (got %)',
                    privileges;
  END IF;
  -- Canonical order, no duplicates.
  SELECT coalesce(array_agg(p ORDER BY array_position(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'], p)), '{}')
    INTO wanted
    FROM (SELECT DISTINCT upper(x) AS p FROM unnest(privileges) x) s;
  SELECT i.key_column INTO key FROM tenant.isolated_tables i WHERE i.table_name = target;
  IF key IS NULL THEN
    RAISE EXCEPTION 'tenant.set_tenant_privileges: % is not under isolation', target
      USING HINT = 'Call tenant.enable_isolation() on it first.';
  END IF;
  UPDATE tenant.isolated_tables i SET tenant_privileges = wanted
   WHERE i.table_name = target AND i.tenant_privileges IS DISTINCT FROM wanted;
  PERFORM tenant.enable_isolation(target, key);
END
$fn$;

ALTER FUNCTION tenant.uuid_or_null(text)           OWNER TO tenant_owner;
ALTER FUNCTION tenant.current_organization_id()    OWNER TO tenant_owner;
ALTER FUNCTION tenant.current_user_id()            OWNER TO tenant_owner;
ALTER FUNCTION tenant.stamp_audit_columns()        OWNER TO tenant_owner;
ALTER FUNCTION tenant.enable_isolation(regclass, name) OWNER TO tenant_owner;
ALTER FUNCTION tenant.set_tenant_privileges(regclass, text[]) OWNER TO tenant_owner;
REVOKE ALL ON FUNCTION tenant.set_tenant_privileges(regclass, text[]) FROM PUBLIC;

-- Functions are executable by PUBLIC by default. Tenant sessions need the two
-- helpers and uuid_or_null (policies and column defaults run them as the
-- invoking role). A trigger function needs no EXECUTE grant for the role that
-- fires it; enable_isolation is for DBAs only.
REVOKE ALL ON FUNCTION tenant.uuid_or_null(text), tenant.current_organization_id(),
                       tenant.current_user_id(), tenant.stamp_audit_columns(),
                       tenant.enable_isolation(regclass, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.uuid_or_null(text), tenant.current_organization_id(),
                          tenant.current_user_id() TO tenant_app;
