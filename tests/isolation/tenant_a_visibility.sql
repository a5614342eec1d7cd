-- run-as: tenant_a
-- Tenant A (Acme Academy) sees its own rows and nothing else, in every table.
-- By hand: PGPASSWORD=$TOKEN_A psql -X -h 127.0.0.1 -p $PROXY_PORT -U app -d app -f tenant_a_visibility.sql
-- (the token was minted with --org aaaaaaaa-0000-4000-8000-000000000001 --sub <Alice's user id>)

-- The session is pinned by the proxy to organization A and its user Alice.
SELECT current_setting('app.current_organization_id') AS organization_setting,
       tenant.current_organization_id()              AS organization,
       tenant.current_user_id()                      AS user_id;

-- organizations is filtered by its own id: exactly one row.
SELECT id, name, plan FROM organizations;

-- Every tenant table: how many rows are visible, and from which organizations.
-- Each line must show only organization A's id.
SELECT 'organizations' AS table_name, count(*) AS visible_rows, array_agg(DISTINCT id) AS organizations FROM organizations
UNION ALL SELECT 'users', count(*), array_agg(DISTINCT organization_id) FROM users
UNION ALL SELECT 'agent_instances', count(*), array_agg(DISTINCT organization_id) FROM agent_instances
UNION ALL SELECT 'roblox_environments', count(*), array_agg(DISTINCT organization_id) FROM roblox_environments
UNION ALL SELECT 'roblox_sessions', count(*), array_agg(DISTINCT organization_id) FROM roblox_sessions
UNION ALL SELECT 'roblox_environment_shares', count(*), array_agg(DISTINCT organization_id) FROM roblox_environment_shares
UNION ALL SELECT 'customers', count(*), array_agg(DISTINCT organization_id) FROM customers
UNION ALL SELECT 'subscriptions', count(*), array_agg(DISTINCT organization_id) FROM subscriptions
UNION ALL SELECT 'payment_methods', count(*), array_agg(DISTINCT organization_id) FROM payment_methods
UNION ALL SELECT 'invoices', count(*), array_agg(DISTINCT organization_id) FROM invoices
UNION ALL SELECT 'content_generations', count(*), array_agg(DISTINCT organization_id) FROM content_generations
UNION ALL SELECT 'content_feedback', count(*), array_agg(DISTINCT organization_id) FROM content_feedback
UNION ALL SELECT 'learning_profiles', count(*), array_agg(DISTINCT organization_id) FROM learning_profiles;

-- Row-level detail for a few tables: nothing of Bravo's appears.
SELECT email, display_name, role FROM users ORDER BY email;
SELECT agent_id, agent_type, status, configuration FROM agent_instances ORDER BY agent_id;
SELECT number, status, amount_due_cents FROM invoices ORDER BY number;
SELECT content_type, prompt FROM content_generations ORDER BY prompt;

-- Aggregates and joins see the same filtered rows.
SELECT count(*) AS users_total, count(DISTINCT organization_id) AS organizations FROM users;
SELECT u.email, e.name AS environment, s.status AS session_status
  FROM roblox_sessions s
  JOIN roblox_environments e ON e.organization_id = s.organization_id AND e.id = s.environment_id
  JOIN users u ON u.organization_id = s.organization_id AND u.id = s.user_id
 ORDER BY 1;
