-- 35_indexes.sql: one index per access path of the seed endpoints, each
-- leading with the tenant column.
--
-- Every tenant query carries the policy predicate
--   organization_id = (SELECT tenant.current_organization_id())
-- evaluated once per statement, so an index that starts with organization_id
-- and continues with the endpoint's own filter/sort columns turns each
-- endpoint into a narrow index range scan. Primary keys (organization_id, id)
-- and the per-organization unique keys already serve "get by id", "agent by
-- agent_id", "user by email", "profile by user", "share by environment and
-- user"; the indexes below cover the list endpoints and the child side of
-- every composite foreign key (so deleting a parent does not scan children).
--
-- Idempotent: CREATE INDEX IF NOT EXISTS. On a large live table create the
-- same index by hand with CREATE INDEX CONCURRENTLY first; this file then
-- finds it by name and skips it.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;
BEGIN;

-- users: list an organization's users, newest first.
CREATE INDEX IF NOT EXISTS users_org_created_idx
    ON public.users (organization_id, created_at DESC);

-- agent_instances: GET /agents?status=&agent_type=, GET /agents?agent_type=,
-- GET /agents (newest first), agents of a user.
CREATE INDEX IF NOT EXISTS agent_instances_org_status_type_idx
    ON public.agent_instances (organization_id, status, agent_type, created_at DESC);
CREATE INDEX IF NOT EXISTS agent_instances_org_type_idx
    ON public.agent_instances (organization_id, agent_type, created_at DESC);
CREATE INDEX IF NOT EXISTS agent_instances_org_created_idx
    ON public.agent_instances (organization_id, created_at DESC);
CREATE INDEX IF NOT EXISTS agent_instances_org_user_idx
    ON public.agent_instances (organization_id, user_id);

-- roblox_environments: environments of a user, newest first.
CREATE INDEX IF NOT EXISTS roblox_environments_org_user_idx
    ON public.roblox_environments (organization_id, user_id, created_at DESC);

-- roblox_sessions: sessions of an environment / of a user, latest first.
CREATE INDEX IF NOT EXISTS roblox_sessions_org_environment_idx
    ON public.roblox_sessions (organization_id, environment_id, started_at DESC);
CREATE INDEX IF NOT EXISTS roblox_sessions_org_user_idx
    ON public.roblox_sessions (organization_id, user_id, started_at DESC);

-- roblox_environment_shares: "shared with me". By environment is served by
-- roblox_environment_shares_key (organization_id, environment_id, user).
CREATE INDEX IF NOT EXISTS roblox_environment_shares_org_user_idx
    ON public.roblox_environment_shares (organization_id, shared_with_user_id);

-- customers: the customer record of a user.
CREATE INDEX IF NOT EXISTS customers_org_user_idx
    ON public.customers (organization_id, user_id);

-- subscriptions: subscriptions of a customer (optionally by status).
CREATE INDEX IF NOT EXISTS subscriptions_org_customer_idx
    ON public.subscriptions (organization_id, customer_id, status);

-- payment_methods: payment methods of a customer.
CREATE INDEX IF NOT EXISTS payment_methods_org_customer_idx
    ON public.payment_methods (organization_id, customer_id);

-- invoices: invoices of a customer by date; invoices of a subscription;
-- open invoices by due date.
CREATE INDEX IF NOT EXISTS invoices_org_customer_issued_idx
    ON public.invoices (organization_id, customer_id, issued_at DESC);
CREATE INDEX IF NOT EXISTS invoices_org_subscription_idx
    ON public.invoices (organization_id, subscription_id);
CREATE INDEX IF NOT EXISTS invoices_org_status_due_idx
    ON public.invoices (organization_id, status, due_at);

-- content_generations: a user's generations, newest first; by agent.
CREATE INDEX IF NOT EXISTS content_generations_org_user_created_idx
    ON public.content_generations (organization_id, user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS content_generations_org_agent_idx
    ON public.content_generations (organization_id, agent_instance_id);

-- content_feedback: feedback on a generation; feedback given by a user.
CREATE INDEX IF NOT EXISTS content_feedback_org_generation_idx
    ON public.content_feedback (organization_id, content_generation_id);
CREATE INDEX IF NOT EXISTS content_feedback_org_user_idx
    ON public.content_feedback (organization_id, user_id);

COMMIT;
