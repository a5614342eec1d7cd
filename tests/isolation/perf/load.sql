-- Load ~1.15M rows over 100 organizations for the index/latency test.
-- Run as a superuser after sql/. Deterministic ids: md5(<kind><org>-<n>)::uuid,
-- so queries.py can compute keys without reading them back.
--
-- session_replication_role = replica skips triggers (the audit-column
-- trigger and the foreign-key checks) for a fast bulk load; the data is
-- consistent by construction.

\set ON_ERROR_STOP 1
SET session_replication_role = replica;
SET synchronous_commit = off;
SET maintenance_work_mem = '256MB';

BEGIN;

INSERT INTO organizations (id, name)
SELECT md5('org' || o)::uuid, 'Organization ' || o FROM generate_series(1, 100) o;

-- users: 1,000 per organization
INSERT INTO users (organization_id, id, email, display_name, created_at)
SELECT md5('org' || o)::uuid, md5('user' || o || '-' || n)::uuid,
       'user' || n || '@org' || o || '.test', 'User ' || n,
       now() - n * interval '1 hour'
  FROM generate_series(1, 100) o, generate_series(1, 1000) n;

-- agent_instances: 2,000 per organization
INSERT INTO agent_instances (organization_id, id, agent_id, agent_type, status, configuration, user_id, created_at, deleted_at)
SELECT md5('org' || o)::uuid, md5('agent' || o || '-' || n)::uuid, 'agent-' || n,
       (ARRAY['tutor', 'grader', 'builder', 'assistant'])[n % 4 + 1],
       (ARRAY['running', 'stopped', 'pending', 'failed', 'archived'])[n % 5 + 1],
       jsonb_build_object('model', 'm' || (n % 7)), md5('user' || o || '-' || (n % 1000 + 1))::uuid,
       now() - n * interval '1 minute',
       CASE WHEN n % 50 = 0 THEN now() END
  FROM generate_series(1, 100) o, generate_series(1, 2000) n;

-- roblox_environments: 1,000 per organization
INSERT INTO roblox_environments (organization_id, id, user_id, name, place_id, status, created_at)
SELECT md5('org' || o)::uuid, md5('env' || o || '-' || n)::uuid,
       md5('user' || o || '-' || ((n * 7) % 1000 + 1))::uuid, 'Environment ' || n, (1000 + n)::text,
       (ARRAY['draft', 'published'])[n % 2 + 1], now() - n * interval '2 hours'
  FROM generate_series(1, 100) o, generate_series(1, 1000) n;

-- roblox_sessions: 2,000 per organization
INSERT INTO roblox_sessions (organization_id, id, environment_id, user_id, status, started_at)
SELECT md5('org' || o)::uuid, md5('session' || o || '-' || n)::uuid,
       md5('env' || o || '-' || (n % 1000 + 1))::uuid, md5('user' || o || '-' || (n % 1000 + 1))::uuid,
       (ARRAY['active', 'ended'])[n % 2 + 1], now() - n * interval '10 minutes'
  FROM generate_series(1, 100) o, generate_series(1, 2000) n;

-- roblox_environment_shares: 500 per organization
INSERT INTO roblox_environment_shares (organization_id, id, environment_id, shared_with_user_id, permission)
SELECT md5('org' || o)::uuid, md5('share' || o || '-' || n)::uuid,
       md5('env' || o || '-' || n)::uuid, md5('user' || o || '-' || ((n * 3) % 1000 + 1))::uuid,
       (ARRAY['view', 'edit'])[n % 2 + 1]
  FROM generate_series(1, 100) o, generate_series(1, 500) n;

-- customers, subscriptions, payment_methods: 500 each per organization
INSERT INTO customers (organization_id, id, user_id, email, stripe_customer_id)
SELECT md5('org' || o)::uuid, md5('customer' || o || '-' || n)::uuid,
       md5('user' || o || '-' || (n * 2))::uuid, 'billing' || n || '@org' || o || '.test',
       'cus_' || o || '_' || n
  FROM generate_series(1, 100) o, generate_series(1, 500) n;

INSERT INTO subscriptions (organization_id, id, customer_id, plan, status, stripe_subscription_id)
SELECT md5('org' || o)::uuid, md5('subscription' || o || '-' || n)::uuid,
       md5('customer' || o || '-' || n)::uuid, (ARRAY['free', 'pro', 'school'])[n % 3 + 1],
       (ARRAY['active', 'canceled'])[n % 2 + 1], 'sub_' || o || '_' || n
  FROM generate_series(1, 100) o, generate_series(1, 500) n;

INSERT INTO payment_methods (organization_id, id, customer_id, brand, last4, exp_month, exp_year, is_default)
SELECT md5('org' || o)::uuid, md5('pm' || o || '-' || n)::uuid,
       md5('customer' || o || '-' || n)::uuid, 'visa', lpad((n % 10000)::text, 4, '0'), 12, 2030, true
  FROM generate_series(1, 100) o, generate_series(1, 500) n;

-- invoices: 1,500 per organization (3 per customer)
INSERT INTO invoices (organization_id, id, customer_id, subscription_id, number, status, amount_due_cents, issued_at, due_at)
SELECT md5('org' || o)::uuid, md5('invoice' || o || '-' || n)::uuid,
       md5('customer' || o || '-' || (n % 500 + 1))::uuid, md5('subscription' || o || '-' || (n % 500 + 1))::uuid,
       'INV-' || lpad(n::text, 6, '0'), (ARRAY['paid', 'open', 'void'])[n % 3 + 1], 4900,
       now() - n * interval '1 day', now() - n * interval '1 day' + interval '30 days'
  FROM generate_series(1, 100) o, generate_series(1, 1500) n;

-- content_generations: 1,000 per organization; content_feedback and
-- learning_profiles: 500 per organization
INSERT INTO content_generations (organization_id, id, user_id, agent_instance_id, content_type, prompt, status, created_at)
SELECT md5('org' || o)::uuid, md5('generation' || o || '-' || n)::uuid,
       md5('user' || o || '-' || (n % 1000 + 1))::uuid, md5('agent' || o || '-' || (n % 2000 + 1))::uuid,
       (ARRAY['quiz', 'lesson', 'script'])[n % 3 + 1], 'Prompt ' || n, 'completed',
       now() - n * interval '30 minutes'
  FROM generate_series(1, 100) o, generate_series(1, 1000) n;

INSERT INTO content_feedback (organization_id, id, content_generation_id, user_id, rating)
SELECT md5('org' || o)::uuid, md5('feedback' || o || '-' || n)::uuid,
       md5('generation' || o || '-' || n)::uuid, md5('user' || o || '-' || (n % 1000 + 1))::uuid, n % 5 + 1
  FROM generate_series(1, 100) o, generate_series(1, 500) n;

INSERT INTO learning_profiles (organization_id, id, user_id, grade_level)
SELECT md5('org' || o)::uuid, md5('profile' || o || '-' || n)::uuid,
       md5('user' || o || '-' || n)::uuid, (n % 12 + 1)::text
  FROM generate_series(1, 100) o, generate_series(1, 500) n;

COMMIT;
RESET session_replication_role;
VACUUM ANALYZE;
