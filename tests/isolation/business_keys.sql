-- run-as: tenant_a
-- The same business key exists in both organizations, and unique keys give
-- no cross-tenant oracle: every unique key includes organization_id, so a key
-- used by tenant B is free in tenant A, and a duplicate is reported only
-- against A's own rows. Rolled back at the end.
-- By hand: PGPASSWORD=$TOKEN_A psql -X -h 127.0.0.1 -p $PROXY_PORT -U app -d app -f business_keys.sql

\set ON_ERROR_ROLLBACK on
BEGIN;

-- Seeded in both A and B; A sees exactly one of each.
SELECT agent_id, count(*) FROM agent_instances WHERE agent_id = 'agent-shared' GROUP BY 1;
SELECT email, count(*) FROM users WHERE email = 'admin@example.com' GROUP BY 1;
SELECT number, count(*) FROM invoices WHERE number = 'INV-0001' GROUP BY 1;
SELECT stripe_customer_id, count(*) FROM customers WHERE stripe_customer_id = 'cus_shared' GROUP BY 1;

-- Keys that exist only in B can be created in A: no "already exists" leak.
INSERT INTO agent_instances (agent_id, agent_type, status) VALUES ('agent-b-only', 'tutor', 'pending');
INSERT INTO users (email) VALUES ('bianca@bravo.test');
INSERT INTO subscriptions (customer_id, plan, stripe_subscription_id)
VALUES ('aaaaaaaa-0006-4000-8000-000000000001', 'pro', 'sub_b1');
INSERT INTO learning_profiles (user_id) VALUES ('aaaaaaaa-0001-4000-8000-000000000001');

-- A duplicate inside A is still refused. PostgreSQL leaves the key values
-- out of the error because the table has row level security.
INSERT INTO agent_instances (agent_id, agent_type, status) VALUES ('agent-a-only', 'tutor', 'pending');
INSERT INTO users (email) VALUES ('arthur@acme.test');
INSERT INTO invoices (customer_id, number) VALUES ('aaaaaaaa-0006-4000-8000-000000000001', 'INV-0002');

SELECT agent_id FROM agent_instances ORDER BY agent_id;

ROLLBACK;
