-- 20_tables.sql: the seed application's tables, every one tenant-scoped.
--
-- Conventions (each one closes a specific hole):
--   * organization_id uuid NOT NULL DEFAULT tenant.current_organization_id():
--     applications never send it ("do not include organization_id in create
--     models"); a session without a valid organization gets NULL and the
--     INSERT fails on NOT NULL.
--   * PRIMARY KEY (organization_id, id), UNIQUE (organization_id, <business
--     key>): unique and foreign-key checks are NOT filtered by row level
--     security, so a global unique key would let one tenant probe another's
--     data through constraint errors. The leading organization_id also makes
--     every key index usable by the tenant filter.
--   * Foreign keys are composite (organization_id, x_id) -> parent
--     (organization_id, id): a row can only reference a parent in its own
--     organization, whatever ids a client sends.
--   * created_by_id/updated_by_id default to tenant.current_user_id() and
--     created_at/updated_at to now(); the tenant_audit_columns trigger
--     (attached by tenant.enable_isolation in 30_isolation.sql) keeps them
--     honest on INSERT and UPDATE. deleted_at marks soft deletes.
--   * Tables are created here without grants; tenant_app can reach none of
--     them until 30_isolation.sql has put each under row level security.
--
-- Idempotent: CREATE ... IF NOT EXISTS, and ownership re-asserted at the end.
-- The whole file is one transaction.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;
BEGIN;

CREATE TABLE IF NOT EXISTS public.organizations (
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    name            text        NOT NULL,
    plan            text        NOT NULL DEFAULT 'free',
    settings        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_by_id   uuid                 DEFAULT tenant.current_user_id(),
    updated_by_id   uuid                 DEFAULT tenant.current_user_id(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    CONSTRAINT organizations_pkey PRIMARY KEY (id)
);
COMMENT ON TABLE public.organizations IS
  'Tenants. Row level security filters this table by its own id.';

CREATE TABLE IF NOT EXISTS public.users (
    organization_id uuid        NOT NULL DEFAULT tenant.current_organization_id(),
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    email           text        NOT NULL,
    display_name    text,
    role            text        NOT NULL DEFAULT 'member',
    is_active       boolean     NOT NULL DEFAULT true,
    created_by_id   uuid                 DEFAULT tenant.current_user_id(),
    updated_by_id   uuid                 DEFAULT tenant.current_user_id(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    CONSTRAINT users_pkey PRIMARY KEY (organization_id, id),
    CONSTRAINT users_email_key UNIQUE (organization_id, email),
    CONSTRAINT users_organization_fkey FOREIGN KEY (organization_id)
        REFERENCES public.organizations (id)
);

CREATE TABLE IF NOT EXISTS public.agent_instances (
    organization_id uuid        NOT NULL DEFAULT tenant.current_organization_id(),
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    agent_id        text        NOT NULL,
    agent_type      text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending',
    configuration   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    user_id         uuid,
    last_heartbeat_at timestamptz,
    created_by_id   uuid                 DEFAULT tenant.current_user_id(),
    updated_by_id   uuid                 DEFAULT tenant.current_user_id(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    CONSTRAINT agent_instances_pkey PRIMARY KEY (organization_id, id),
    -- agent_id is unique per organization, not globally.
    CONSTRAINT agent_instances_agent_id_key UNIQUE (organization_id, agent_id),
    CONSTRAINT agent_instances_organization_fkey FOREIGN KEY (organization_id)
        REFERENCES public.organizations (id),
    CONSTRAINT agent_instances_user_fkey FOREIGN KEY (organization_id, user_id)
        REFERENCES public.users (organization_id, id)
);

CREATE TABLE IF NOT EXISTS public.roblox_environments (
    organization_id uuid        NOT NULL DEFAULT tenant.current_organization_id(),
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    user_id         uuid        NOT NULL,
    name            text        NOT NULL,
    place_id        text,
    universe_id     text,
    status          text        NOT NULL DEFAULT 'draft',
    settings        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_by_id   uuid                 DEFAULT tenant.current_user_id(),
    updated_by_id   uuid                 DEFAULT tenant.current_user_id(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    CONSTRAINT roblox_environments_pkey PRIMARY KEY (organization_id, id),
    CONSTRAINT roblox_environments_organization_fkey FOREIGN KEY (organization_id)
        REFERENCES public.organizations (id),
    CONSTRAINT roblox_environments_user_fkey FOREIGN KEY (organization_id, user_id)
        REFERENCES public.users (organization_id, id)
);

CREATE TABLE IF NOT EXISTS public.roblox_sessions (
    organization_id uuid        NOT NULL DEFAULT tenant.current_organization_id(),
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    environment_id  uuid        NOT NULL,
    user_id         uuid        NOT NULL,
    status          text        NOT NULL DEFAULT 'active',
    started_at      timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_by_id   uuid                 DEFAULT tenant.current_user_id(),
    updated_by_id   uuid                 DEFAULT tenant.current_user_id(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT roblox_sessions_pkey PRIMARY KEY (organization_id, id),
    CONSTRAINT roblox_sessions_environment_fkey FOREIGN KEY (organization_id, environment_id)
        REFERENCES public.roblox_environments (organization_id, id) ON DELETE CASCADE,
    CONSTRAINT roblox_sessions_user_fkey FOREIGN KEY (organization_id, user_id)
        REFERENCES public.users (organization_id, id)
);

CREATE TABLE IF NOT EXISTS public.roblox_environment_shares (
    organization_id uuid        NOT NULL DEFAULT tenant.current_organization_id(),
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    environment_id  uuid        NOT NULL,
    shared_with_user_id uuid    NOT NULL,
    permission      text        NOT NULL DEFAULT 'view',
    created_by_id   uuid                 DEFAULT tenant.current_user_id(),
    updated_by_id   uuid                 DEFAULT tenant.current_user_id(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT roblox_environment_shares_pkey PRIMARY KEY (organization_id, id),
    CONSTRAINT roblox_environment_shares_key UNIQUE (organization_id, environment_id, shared_with_user_id),
    CONSTRAINT roblox_environment_shares_permission_check CHECK (permission IN ('view', 'edit', 'admin')),
    CONSTRAINT roblox_environment_shares_environment_fkey FOREIGN KEY (organization_id, environment_id)
        REFERENCES public.roblox_environments (organization_id, id) ON DELETE CASCADE,
    CONSTRAINT roblox_environment_shares_user_fkey FOREIGN KEY (organization_id, shared_with_user_id)
        REFERENCES public.users (organization_id, id)
);

CREATE TABLE IF NOT EXISTS public.customers (
    organization_id uuid        NOT NULL DEFAULT tenant.current_organization_id(),
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    user_id         uuid,
    email           text        NOT NULL,
    name            text,
    stripe_customer_id text,
    created_by_id   uuid                 DEFAULT tenant.current_user_id(),
    updated_by_id   uuid                 DEFAULT tenant.current_user_id(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    CONSTRAINT customers_pkey PRIMARY KEY (organization_id, id),
    CONSTRAINT customers_stripe_customer_id_key UNIQUE (organization_id, stripe_customer_id),
    CONSTRAINT customers_organization_fkey FOREIGN KEY (organization_id)
        REFERENCES public.organizations (id),
    CONSTRAINT customers_user_fkey FOREIGN KEY (organization_id, user_id)
        REFERENCES public.users (organization_id, id)
);

CREATE TABLE IF NOT EXISTS public.subscriptions (
    organization_id uuid        NOT NULL DEFAULT tenant.current_organization_id(),
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    customer_id     uuid        NOT NULL,
    plan            text        NOT NULL,
    status          text        NOT NULL DEFAULT 'active',
    current_period_start timestamptz,
    current_period_end   timestamptz,
    cancel_at       timestamptz,
    stripe_subscription_id text,
    created_by_id   uuid                 DEFAULT tenant.current_user_id(),
    updated_by_id   uuid                 DEFAULT tenant.current_user_id(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    CONSTRAINT subscriptions_pkey PRIMARY KEY (organization_id, id),
    CONSTRAINT subscriptions_stripe_subscription_id_key UNIQUE (organization_id, stripe_subscription_id),
    CONSTRAINT subscriptions_customer_fkey FOREIGN KEY (organization_id, customer_id)
        REFERENCES public.customers (organization_id, id)
);

CREATE TABLE IF NOT EXISTS public.payment_methods (
    organization_id uuid        NOT NULL DEFAULT tenant.current_organization_id(),
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    customer_id     uuid        NOT NULL,
    kind            text        NOT NULL DEFAULT 'card',
    brand           text,
    last4           text,
    exp_month       smallint,
    exp_year        smallint,
    is_default      boolean     NOT NULL DEFAULT false,
    stripe_payment_method_id text,
    created_by_id   uuid                 DEFAULT tenant.current_user_id(),
    updated_by_id   uuid                 DEFAULT tenant.current_user_id(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    CONSTRAINT payment_methods_pkey PRIMARY KEY (organization_id, id),
    CONSTRAINT payment_methods_stripe_payment_method_id_key UNIQUE (organization_id, stripe_payment_method_id),
    CONSTRAINT payment_methods_last4_check CHECK (last4 ~ '^[0-9]{4}$'),
    CONSTRAINT payment_methods_customer_fkey FOREIGN KEY (organization_id, customer_id)
        REFERENCES public.customers (organization_id, id)
);

CREATE TABLE IF NOT EXISTS public.invoices (
    organization_id uuid        NOT NULL DEFAULT tenant.current_organization_id(),
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    customer_id     uuid        NOT NULL,
    subscription_id uuid,
    number          text        NOT NULL,
    status          text        NOT NULL DEFAULT 'draft',
    currency        char(3)     NOT NULL DEFAULT 'USD',
    amount_due_cents  bigint    NOT NULL DEFAULT 0,
    amount_paid_cents bigint    NOT NULL DEFAULT 0,
    issued_at       timestamptz NOT NULL DEFAULT now(),
    due_at          timestamptz,
    paid_at         timestamptz,
    created_by_id   uuid                 DEFAULT tenant.current_user_id(),
    updated_by_id   uuid                 DEFAULT tenant.current_user_id(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    CONSTRAINT invoices_pkey PRIMARY KEY (organization_id, id),
    -- Invoice numbers are unique per organization (each tenant numbers its own).
    CONSTRAINT invoices_number_key UNIQUE (organization_id, number),
    CONSTRAINT invoices_customer_fkey FOREIGN KEY (organization_id, customer_id)
        REFERENCES public.customers (organization_id, id),
    CONSTRAINT invoices_subscription_fkey FOREIGN KEY (organization_id, subscription_id)
        REFERENCES public.subscriptions (organization_id, id)
);

CREATE TABLE IF NOT EXISTS public.content_generations (
    organization_id uuid        NOT NULL DEFAULT tenant.current_organization_id(),
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    user_id         uuid        NOT NULL,
    agent_instance_id uuid,
    content_type    text        NOT NULL,
    prompt          text        NOT NULL,
    result          jsonb,
    status          text        NOT NULL DEFAULT 'pending',
    created_by_id   uuid                 DEFAULT tenant.current_user_id(),
    updated_by_id   uuid                 DEFAULT tenant.current_user_id(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    CONSTRAINT content_generations_pkey PRIMARY KEY (organization_id, id),
    CONSTRAINT content_generations_user_fkey FOREIGN KEY (organization_id, user_id)
        REFERENCES public.users (organization_id, id),
    CONSTRAINT content_generations_agent_instance_fkey FOREIGN KEY (organization_id, agent_instance_id)
        REFERENCES public.agent_instances (organization_id, id)
);

CREATE TABLE IF NOT EXISTS public.content_feedback (
    organization_id uuid        NOT NULL DEFAULT tenant.current_organization_id(),
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    content_generation_id uuid  NOT NULL,
    user_id         uuid        NOT NULL,
    rating          smallint    NOT NULL,
    comment         text,
    created_by_id   uuid                 DEFAULT tenant.current_user_id(),
    updated_by_id   uuid                 DEFAULT tenant.current_user_id(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT content_feedback_pkey PRIMARY KEY (organization_id, id),
    CONSTRAINT content_feedback_rating_check CHECK (rating BETWEEN 1 AND 5),
    CONSTRAINT content_feedback_generation_fkey FOREIGN KEY (organization_id, content_generation_id)
        REFERENCES public.content_generations (organization_id, id) ON DELETE CASCADE,
    CONSTRAINT content_feedback_user_fkey FOREIGN KEY (organization_id, user_id)
        REFERENCES public.users (organization_id, id)
);

CREATE TABLE IF NOT EXISTS public.learning_profiles (
    organization_id uuid        NOT NULL DEFAULT tenant.current_organization_id(),
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    user_id         uuid        NOT NULL,
    grade_level     text,
    learning_style  text,
    preferences     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    progress        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_by_id   uuid                 DEFAULT tenant.current_user_id(),
    updated_by_id   uuid                 DEFAULT tenant.current_user_id(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    CONSTRAINT learning_profiles_pkey PRIMARY KEY (organization_id, id),
    -- One profile per user; per organization, like every other key.
    CONSTRAINT learning_profiles_user_key UNIQUE (organization_id, user_id),
    CONSTRAINT learning_profiles_user_fkey FOREIGN KEY (organization_id, user_id)
        REFERENCES public.users (organization_id, id)
);

-- Ownership: every table belongs to tenant_owner (a no-op when it already does).
DO $do$
DECLARE
  t regclass;
BEGIN
  FOREACH t IN ARRAY ARRAY[
      'public.organizations', 'public.users', 'public.agent_instances',
      'public.roblox_environments', 'public.roblox_sessions',
      'public.roblox_environment_shares', 'public.customers',
      'public.subscriptions', 'public.payment_methods', 'public.invoices',
      'public.content_generations', 'public.content_feedback',
      'public.learning_profiles']::regclass[]
  LOOP
    EXECUTE format('ALTER TABLE %s OWNER TO tenant_owner', t);
  END LOOP;
END
$do$;

COMMIT;
