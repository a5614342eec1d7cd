-- 30_isolation.sql: put every tenant table under row level security.
--
-- tenant.enable_isolation() (10_helpers.sql) does, per table: NOT NULL +
-- session default on the tenant column, audit-column defaults and trigger,
-- ENABLE + FORCE ROW LEVEL SECURITY, the restrictive tenant_isolation policy
-- (USING and WITH CHECK) plus the permissive tenant_access policy for
-- tenant_app, an index leading with the tenant column, and the grants
-- (SELECT, INSERT, UPDATE, DELETE to tenant_app; never TRUNCATE, REFERENCES,
-- TRIGGER). Calling it again converges and changes nothing.
--
-- organizations is keyed by its own id: a tenant session sees exactly its own
-- organization row. It may read and update that row, and INSERT only a row
-- whose id is its own organization (self-provisioning); it may not DELETE it,
-- since removing a tenant is an operator task. tenant.set_tenant_privileges()
-- records that, so enable_isolation() called again never grants DELETE back.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;
BEGIN;

DO $do$
DECLARE
  t regclass;
BEGIN
  PERFORM tenant.enable_isolation('public.organizations', 'id');

  FOREACH t IN ARRAY ARRAY[
      'public.users', 'public.agent_instances',
      'public.roblox_environments', 'public.roblox_sessions',
      'public.roblox_environment_shares', 'public.customers',
      'public.subscriptions', 'public.payment_methods', 'public.invoices',
      'public.content_generations', 'public.content_feedback',
      'public.learning_profiles']::regclass[]
  LOOP
    PERFORM tenant.enable_isolation(t);
  END LOOP;
END
$do$;

-- No DELETE on organizations, recorded so that enable_isolation() keeps it
-- that way when called again (and tenant.audit() reports a DELETE granted back).
SELECT tenant.set_tenant_privileges('public.organizations', '{SELECT,INSERT,UPDATE}');

COMMIT;
