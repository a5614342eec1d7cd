-- 00_roles.sql: the two roles every other file relies on, and the helper schema.
--
--   tenant_owner  NOLOGIN. Owns every tenant table, function and policy. Nobody
--                 logs in as it; a DBA applies sql/ as a superuser, and the
--                 files hand ownership to this role explicitly.
--   tenant_app    NOLOGIN, NOBYPASSRLS. The group the proxy's login role joins:
--                   CREATE ROLE proxy_login LOGIN PASSWORD '...' IN ROLE tenant_app;
--                 It receives only SELECT/INSERT/UPDATE/DELETE on tenant tables
--                 and the USAGE/EXECUTE it needs to evaluate the policies.
--
-- Why the owner is a separate role: a table owner may ALTER TABLE ... DISABLE
-- ROW LEVEL SECURITY, drop policies and change grants. The role that runs tenant
-- SQL must therefore never own anything and never be a member of tenant_owner.
--
-- tenant_app itself is NOINHERIT: should someone ever grant it membership in
-- another role, the privileges of that role do not flow through tenant_app to
-- the proxy's login role. (tenant.audit() reports such a membership anyway.)
-- Its members still use tenant_app's own grants: NOINHERIT on a role only
-- stops what that role inherits from its own groups.
--
-- NOINHERIT login roles: PostgreSQL 15 lets a member use a group's privileges
-- only if the member has INHERIT, or after SET ROLE. The proxy never issues SET
-- ROLE (and its guard refuses it from clients), so for a NOINHERIT login role the
-- DBA also runs, once:
--   ALTER ROLE proxy_login SET role = 'tenant_app';
-- Every session of that role then starts as tenant_app, and RESET ROLE returns to
-- tenant_app because the role-level setting is the session's reset value.
-- tenant.audit() accepts exactly that role-level setting and flags any other.
--
-- Idempotent: roles are created only when missing; the ALTER ROLE statements
-- re-assert the attributes on every run (no-ops when already right).

\set ON_ERROR_STOP 1
SET client_min_messages = warning;

DO $do$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'tenant_owner') THEN
    CREATE ROLE tenant_owner NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'tenant_app') THEN
    CREATE ROLE tenant_app NOLOGIN NOINHERIT;
  END IF;
END
$do$;

-- Re-assert attributes, in case someone changed them by hand.
ALTER ROLE tenant_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
ALTER ROLE tenant_app   NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;

-- Helper schema: functions used by column defaults, policies and DBAs.
-- tenant_app needs USAGE to evaluate the policies and defaults, nothing more.
CREATE SCHEMA IF NOT EXISTS tenant AUTHORIZATION tenant_owner;
ALTER SCHEMA tenant OWNER TO tenant_owner;
REVOKE ALL ON SCHEMA tenant FROM PUBLIC;
GRANT USAGE ON SCHEMA tenant TO tenant_app;

-- Tables live in public so applications reach them by plain name through the
-- default search_path ("$user", public). Nobody but the owner may create there
-- (the PostgreSQL 15 default; re-asserted for databases upgraded from older
-- releases, where PUBLIC still had CREATE).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO tenant_owner;
