-- run-as: tenant_a
-- Tenant A looks up tenant B's rows by key. Every lookup is empty: to the
-- application this is a 404, exactly as for a key that does not exist.
-- By hand: PGPASSWORD=$TOKEN_A psql -X -h 127.0.0.1 -p $PROXY_PORT -U app -d app -f cross_tenant_lookup.sql

-- By primary key, in every table (B's ids are bbbbbbbb-TTTT-..., see sql/demo/seed.sql).

SELECT * FROM organizations WHERE id = 'bbbbbbbb-0000-4000-8000-000000000001';
SELECT * FROM users WHERE id = 'bbbbbbbb-0001-4000-8000-000000000001';
SELECT * FROM agent_instances WHERE id = 'bbbbbbbb-0002-4000-8000-000000000001';
SELECT * FROM roblox_environments WHERE id = 'bbbbbbbb-0003-4000-8000-000000000001';
SELECT * FROM roblox_sessions WHERE id = 'bbbbbbbb-0004-4000-8000-000000000001';
SELECT * FROM roblox_environment_shares WHERE id = 'bbbbbbbb-0005-4000-8000-000000000001';
SELECT * FROM customers WHERE id = 'bbbbbbbb-0006-4000-8000-000000000001';
SELECT * FROM subscriptions WHERE id = 'bbbbbbbb-0007-4000-8000-000000000001';
SELECT * FROM payment_methods WHERE id = 'bbbbbbbb-0008-4000-8000-000000000001';
SELECT * FROM invoices WHERE id = 'bbbbbbbb-0009-4000-8000-000000000001';
SELECT * FROM content_generations WHERE id = 'bbbbbbbb-000a-4000-8000-000000000001';
SELECT * FROM content_feedback WHERE id = 'bbbbbbbb-000b-4000-8000-000000000001';
SELECT * FROM learning_profiles WHERE id = 'bbbbbbbb-000c-4000-8000-000000000001';

-- Even naming B's organization explicitly finds nothing.
SELECT count(*) AS b_users FROM users WHERE organization_id = 'bbbbbbbb-0000-4000-8000-000000000001';
SELECT count(*) AS b_agents FROM agent_instances WHERE organization_id = 'bbbbbbbb-0000-4000-8000-000000000001';
SELECT * FROM organizations WHERE id = 'bbbbbbbb-0000-4000-8000-000000000001';

-- By business key that exists only in B.
SELECT * FROM agent_instances WHERE agent_id = 'agent-b-only';
SELECT * FROM users WHERE email = 'bianca@bravo.test';
SELECT * FROM customers WHERE email = 'billing@bravo.test';
SELECT * FROM subscriptions WHERE stripe_subscription_id = 'sub_b1';
SELECT * FROM content_generations WHERE prompt LIKE 'Bravo%';

-- By a business key both organizations use: only A's row comes back.
SELECT organization_id, agent_id, configuration FROM agent_instances WHERE agent_id = 'agent-shared';
SELECT organization_id, email, display_name FROM users WHERE email = 'admin@example.com';
SELECT organization_id, number, status FROM invoices WHERE number = 'INV-0001';

-- Children of B's parents, reached through a foreign-key column: nothing.
SELECT * FROM roblox_sessions WHERE environment_id = 'bbbbbbbb-0003-4000-8000-000000000001';
SELECT * FROM invoices WHERE customer_id = 'bbbbbbbb-0006-4000-8000-000000000001';
SELECT * FROM content_feedback WHERE content_generation_id = 'bbbbbbbb-000a-4000-8000-000000000001';

-- Joining across the organization boundary finds nothing either.
SELECT u.email, c.email AS customer_email
  FROM users u JOIN customers c ON c.user_id = 'bbbbbbbb-0001-4000-8000-000000000001';

-- EXISTS probes answer "no" for B's rows (no existence oracle).
SELECT EXISTS (SELECT 1 FROM users WHERE id = 'bbbbbbbb-0001-4000-8000-000000000001') AS b_user_exists,
       EXISTS (SELECT 1 FROM users WHERE id = 'aaaaaaaa-0001-4000-8000-000000000001') AS a_user_exists;
