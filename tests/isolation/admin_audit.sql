-- run-as: superuser
-- tenant.audit() reports nothing on a database built from sql/ (plus the
-- login roles the DBA guide creates, including a NOINHERIT one with its
-- documented role setting), and reports each kind of problem when one is
-- created on purpose. Everything is created in a transaction and rolled back.
-- By hand: psql -X -d app -f admin_audit.sql   (as a superuser)

SELECT * FROM tenant.audit();

BEGIN;
-- Tables: RLS off, FORCE off, isolation policy dropped, access policy dropped.
ALTER TABLE customers DISABLE ROW LEVEL SECURITY;
ALTER TABLE users NO FORCE ROW LEVEL SECURITY;
DROP POLICY tenant_isolation ON invoices;
DROP POLICY tenant_access ON payment_methods;
-- A global unique key (an oracle across tenants).
CREATE UNIQUE INDEX customers_email_global ON customers (email);
-- A tenant privilege that ignores RLS.
GRANT TRUNCATE ON subscriptions TO tenant_app;
-- A tenant table owned by the login role.
ALTER TABLE roblox_sessions OWNER TO proxy_login;
-- A registered table whose tenant index was dropped, and one that was dropped.
CREATE TABLE public.flags (organization_id uuid NOT NULL, name text NOT NULL);
SELECT tenant.enable_isolation('public.flags');
DROP INDEX public.flags_organization_id_idx;
CREATE TABLE public.gone (organization_id uuid NOT NULL);
SELECT tenant.enable_isolation('public.gone');
DROP TABLE public.gone;
-- Tables and views outside isolation.
CREATE TABLE public.notes (organization_id uuid, body text);
CREATE TABLE public.exports (organization_id uuid, payload text);
GRANT SELECT ON public.exports TO tenant_app;
CREATE VIEW public.all_users AS SELECT * FROM users;
GRANT SELECT ON public.all_users TO tenant_app;
-- Roles: privileged logins, a tenant role with extra memberships/attributes.
CREATE ROLE rls_skipper LOGIN BYPASSRLS;
CREATE ROLE tenant_superuser LOGIN SUPERUSER IN ROLE tenant_app;
CREATE ROLE noinherit_login LOGIN NOINHERIT IN ROLE tenant_app;
GRANT tenant_owner TO proxy_login;
ALTER ROLE proxy_login CREATEROLE;
-- Role and database settings of protected or parser settings.
ALTER ROLE proxy_login SET app.current_organization_id = 'aaaaaaaa-0000-4000-8000-000000000001';
ALTER ROLE proxy_login_noinherit SET role = 'tenant_owner';
ALTER DATABASE app SET standard_conforming_strings = off;
-- SECURITY DEFINER without a pinned search_path; an IMMUTABLE helper.
CREATE FUNCTION public.leaky() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
ALTER FUNCTION tenant.current_organization_id() IMMUTABLE;
-- Hardening undone.
GRANT EXECUTE ON FUNCTION pg_advisory_lock(bigint) TO tenant_app;
GRANT SELECT ON pg_stat_activity TO tenant_app;
GRANT TEMPORARY ON DATABASE app TO tenant_app;
GRANT USAGE ON LANGUAGE plpgsql TO tenant_app;

SELECT severity, check_name, object_name FROM tenant.audit();
SELECT check_name, detail FROM tenant.audit() WHERE check_name IN ('no_isolation_policy', 'role_setting', 'global_unique_key');
ROLLBACK;

-- Back to the clean state.
SELECT * FROM tenant.audit();

-- The verified context (sql/05_context.sql): verification switched off, keys
-- readable or manageable by a tenant role, and (separately) no key installed.
BEGIN;
SELECT tenant.set_context_verification(false);
GRANT SELECT ON tenant.context_keys TO tenant_app;
GRANT EXECUTE ON FUNCTION tenant.add_context_key(text, text) TO proxy_login;
SELECT severity, check_name, object_name, detail FROM tenant.audit();
ROLLBACK;
BEGIN;
SELECT tenant.remove_context_key('1');
SELECT severity, check_name, object_name, detail FROM tenant.audit();
ROLLBACK;
SELECT * FROM tenant.audit();
