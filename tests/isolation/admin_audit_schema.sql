-- run-as: superuser
-- tenant.audit() on the mistakes a DBA makes when extending the schema: each
-- one is created on purpose (in a rolled-back transaction) next to its
-- correct form, and the report must name exactly the mistakes, with the fix.
-- By hand: psql -X -d app -f admin_audit_schema.sql   (as a superuser)

SELECT * FROM tenant.audit();

-- enable_isolation() called again, as sql/README.md shows, keeps what sql/
-- revoked: organizations still has no DELETE for tenants.
SELECT tenant.enable_isolation('public.organizations', 'id');
SELECT privilege_type FROM information_schema.role_table_grants
 WHERE table_name = 'organizations' AND grantee = 'tenant_app' ORDER BY 1;
SELECT * FROM tenant.audit();

BEGIN;
CREATE EXTENSION btree_gist;

-- Unique keys: organization_id only as an INCLUDE column (wrong) and as a
-- key column (right).
CREATE TABLE public.api_keys (
    organization_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(),
    key_hash text NOT NULL, label text NOT NULL,
    PRIMARY KEY (organization_id, id));
SELECT tenant.enable_isolation('public.api_keys');
CREATE UNIQUE INDEX api_keys_hash_key ON api_keys (key_hash) INCLUDE (organization_id);
CREATE UNIQUE INDEX api_keys_label_key ON api_keys (organization_id, label) INCLUDE (key_hash);

-- Exclusion constraints: a room booking without organization_id (wrong) and
-- with it (right).
CREATE TABLE public.bookings (
    organization_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(),
    room text NOT NULL, during tstzrange NOT NULL,
    PRIMARY KEY (organization_id, id),
    CONSTRAINT bookings_no_overlap EXCLUDE USING gist (room WITH =, during WITH &&));
CREATE TABLE public.desks (
    organization_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(),
    desk text NOT NULL, during tstzrange NOT NULL,
    PRIMARY KEY (organization_id, id),
    CONSTRAINT desks_no_overlap EXCLUDE USING gist (organization_id WITH =, desk WITH =, during WITH &&));
SELECT tenant.enable_isolation('public.bookings');
SELECT tenant.enable_isolation('public.desks');

-- A partitioned tenant table: a unique index on one partition only (wrong).
CREATE TABLE public.events (
    organization_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(),
    kind text NOT NULL, external_ref text,
    PRIMARY KEY (organization_id, kind, id)) PARTITION BY LIST (kind);
CREATE TABLE public.events_login PARTITION OF public.events FOR VALUES IN ('login');
CREATE TABLE public.events_other PARTITION OF public.events DEFAULT;
SELECT tenant.enable_isolation('public.events');
CREATE UNIQUE INDEX events_login_ref_key ON public.events_login (external_ref);

-- Column-level grants on a table outside isolation.
CREATE TABLE public.integrations (organization_id uuid, name text, api_secret text);
GRANT SELECT (name, api_secret) ON public.integrations TO tenant_app;

-- SECURITY DEFINER functions tenants can call (PUBLIC can, by default),
-- owned by a superuser, by a BYPASSRLS role, and by the owner of a tenant
-- table without FORCE; and one with EXECUTE revoked (right).
CREATE FUNCTION public.count_all_users() RETURNS bigint LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = pg_catalog, public AS 'SELECT count(*) FROM public.users';
CREATE ROLE reporting NOLOGIN BYPASSRLS;
CREATE FUNCTION public.report_invoices() RETURNS bigint LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = pg_catalog, public AS 'SELECT 0::bigint';
ALTER FUNCTION public.report_invoices() OWNER TO reporting;
ALTER TABLE public.api_keys NO FORCE ROW LEVEL SECURITY;
CREATE FUNCTION public.api_key_labels() RETURNS SETOF text LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = pg_catalog, public AS 'SELECT label FROM public.api_keys';
ALTER FUNCTION public.api_key_labels() OWNER TO tenant_owner;
CREATE FUNCTION public.admin_purge() RETURNS void LANGUAGE sql SECURITY DEFINER
  SET search_path = pg_catalog, public AS 'SELECT';
REVOKE EXECUTE ON FUNCTION public.admin_purge() FROM PUBLIC;

-- Sequences: a serial key whose sequence tenants were granted, and an
-- identity key.
CREATE TABLE public.tickets (
    organization_id uuid NOT NULL, id bigserial, title text,
    PRIMARY KEY (organization_id, id));
SELECT tenant.enable_isolation('public.tickets');
GRANT USAGE ON SEQUENCE public.tickets_id_seq TO tenant_app;
CREATE TABLE public.orders (
    organization_id uuid NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (organization_id, id));
SELECT tenant.enable_isolation('public.orders');

-- The audit-column trigger disabled on one table, dropped on another, and
-- disabled on one partition.
CREATE TABLE public.events_audit (
    organization_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(),
    kind text NOT NULL, created_at timestamptz, PRIMARY KEY (organization_id, kind, id))
    PARTITION BY LIST (kind);
CREATE TABLE public.events_audit_a PARTITION OF public.events_audit FOR VALUES IN ('a');
SELECT tenant.enable_isolation('public.events_audit');
ALTER TABLE public.events_audit_a DISABLE TRIGGER tenant_audit_columns;
ALTER TABLE public.customers DISABLE TRIGGER tenant_audit_columns;
DROP TRIGGER tenant_audit_columns ON public.invoices;

-- Privileges other than those sql/ intends: DELETE back on organizations, a
-- column-level REFERENCES, and one revoked by hand.
GRANT DELETE ON public.organizations TO tenant_app;
GRANT REFERENCES (email) ON public.users TO tenant_app;
REVOKE UPDATE ON public.learning_profiles FROM tenant_app;

-- Views over a tenant table: security_invoker in any spelling PostgreSQL
-- accepts (right), and an owner-rights view (wrong).
CREATE VIEW public.active_users WITH (security_invoker = 1) AS SELECT id, email FROM users WHERE is_active;
CREATE VIEW public.user_emails WITH (security_invoker = 'TRUE') AS SELECT email FROM users;
CREATE VIEW public.all_emails AS SELECT email FROM users;
GRANT SELECT ON public.active_users, public.user_emails, public.all_emails TO tenant_app;

SELECT severity, check_name, object_name FROM tenant.audit();
SELECT check_name, object_name, detail FROM tenant.audit()
 WHERE check_name NOT IN ('rls_not_forced')
 ORDER BY check_name, object_name, detail;
ROLLBACK;

-- Back to the clean state.
SELECT * FROM tenant.audit();
