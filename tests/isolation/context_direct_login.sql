-- run-as: login_role
-- requires: proxy
-- Logging in DIRECTLY as the proxy's login role, naming organization B in the
-- startup options (organization UUIDs are not secrets), opens nothing: the
-- helpers trust the organization only with a proof the proxy made for this
-- very connection (sql/05_context.sql). Zero rows of any tenant; INSERT fails
-- WITH CHECK (42501); UPDATE and DELETE find no row to change. Then the same
-- with a proof copied from an organization A session read through the proxy.
-- By hand: with the ISO_* variables tests/isolation/run.sh exports,
--   PGPASSWORD=$ISO_LOGIN_PASSWORD psql -X -h 127.0.0.1 -p $ISO_PG_PORT -U proxy_login -d app -f context_direct_login.sql
\getenv pg_port ISO_PG_PORT
\getenv proxy_port ISO_PROXY_PORT
\getenv login_password ISO_LOGIN_PASSWORD
\getenv token_a ISO_TOKEN_A
\getenv token_b ISO_TOKEN_B
\getenv proxy_bin ISO_PROXY_BIN
\getenv key1_file ISO_KEY1_FILE

-- 1. Organization B as a startup option, no proof.
SELECT format('host=127.0.0.1 port=%s user=proxy_login dbname=app password=%s options=%L', :'pg_port', :'login_password',
              '-c app.current_organization_id=bbbbbbbb-0000-4000-8000-000000000001 -c app.current_user_id=bbbbbbbb-0001-4000-8000-000000000001') AS conn \gset
\set QUIET on
\connect :conn
\unset conn
\set QUIET off
SELECT current_user, current_setting('app.current_organization_id') AS organization_setting,
       tenant.current_organization_id() AS organization, tenant.current_user_id() AS user_id,
       tenant.context_status();
SELECT 'organizations' AS table_name, count(*) AS visible_rows FROM organizations
UNION ALL SELECT 'users', count(*) FROM users
UNION ALL SELECT 'agent_instances', count(*) FROM agent_instances
UNION ALL SELECT 'roblox_environments', count(*) FROM roblox_environments
UNION ALL SELECT 'roblox_sessions', count(*) FROM roblox_sessions
UNION ALL SELECT 'roblox_environment_shares', count(*) FROM roblox_environment_shares
UNION ALL SELECT 'customers', count(*) FROM customers
UNION ALL SELECT 'subscriptions', count(*) FROM subscriptions
UNION ALL SELECT 'payment_methods', count(*) FROM payment_methods
UNION ALL SELECT 'invoices', count(*) FROM invoices
UNION ALL SELECT 'content_generations', count(*) FROM content_generations
UNION ALL SELECT 'content_feedback', count(*) FROM content_feedback
UNION ALL SELECT 'learning_profiles', count(*) FROM learning_profiles;
INSERT INTO users (email) VALUES ('direct@example.com');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
INSERT INTO users (organization_id, email) VALUES ('bbbbbbbb-0000-4000-8000-000000000001', 'direct@example.com');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
INSERT INTO agent_instances (organization_id, agent_id, agent_type, status)
VALUES ('bbbbbbbb-0000-4000-8000-000000000001', 'direct-agent', 'tutor', 'running');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
UPDATE users SET display_name = 'direct' WHERE organization_id = 'bbbbbbbb-0000-4000-8000-000000000001';
UPDATE agent_instances SET status = 'hijacked';
DELETE FROM invoices;
DELETE FROM agent_instances WHERE organization_id = 'bbbbbbbb-0000-4000-8000-000000000001';

-- 2. A proof copied from a live organization A session (read through the proxy).
SELECT format('host=127.0.0.1 port=%s user=app dbname=app password=%s', :'proxy_port', :'token_a') AS conn \gset
\set QUIET on
\connect :conn
\unset conn
\set QUIET off
SELECT tenant.context_status() AS through_proxy, tenant.current_organization_id() AS organization;
SELECT current_setting('app.context_proof') AS proof_a \gset
-- Directly, organization B with A's proof.
SELECT format('host=127.0.0.1 port=%s user=proxy_login dbname=app password=%s options=%L', :'pg_port', :'login_password',
              '-c app.current_organization_id=bbbbbbbb-0000-4000-8000-000000000001 -c app.current_user_id=bbbbbbbb-0001-4000-8000-000000000001 -c app.context_proof=' || :'proof_a') AS conn \gset
\set QUIET on
\connect :conn
\unset conn
\set QUIET off
SELECT current_setting('app.current_organization_id') AS organization_setting,
       tenant.current_organization_id() AS organization, tenant.current_user_id() AS user_id,
       tenant.context_status();
SELECT 'organizations' AS table_name, count(*) AS visible_rows FROM organizations
UNION ALL SELECT 'users', count(*) FROM users
UNION ALL SELECT 'agent_instances', count(*) FROM agent_instances
UNION ALL SELECT 'roblox_environments', count(*) FROM roblox_environments
UNION ALL SELECT 'roblox_sessions', count(*) FROM roblox_sessions
UNION ALL SELECT 'roblox_environment_shares', count(*) FROM roblox_environment_shares
UNION ALL SELECT 'customers', count(*) FROM customers
UNION ALL SELECT 'subscriptions', count(*) FROM subscriptions
UNION ALL SELECT 'payment_methods', count(*) FROM payment_methods
UNION ALL SELECT 'invoices', count(*) FROM invoices
UNION ALL SELECT 'content_generations', count(*) FROM content_generations
UNION ALL SELECT 'content_feedback', count(*) FROM content_feedback
UNION ALL SELECT 'learning_profiles', count(*) FROM learning_profiles;
INSERT INTO users (email) VALUES ('direct@example.com');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
INSERT INTO users (organization_id, email) VALUES ('bbbbbbbb-0000-4000-8000-000000000001', 'direct@example.com');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
INSERT INTO agent_instances (organization_id, agent_id, agent_type, status)
VALUES ('bbbbbbbb-0000-4000-8000-000000000001', 'direct-agent', 'tutor', 'running');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
UPDATE users SET display_name = 'direct' WHERE organization_id = 'bbbbbbbb-0000-4000-8000-000000000001';
UPDATE agent_instances SET status = 'hijacked';
DELETE FROM invoices;
DELETE FROM agent_instances WHERE organization_id = 'bbbbbbbb-0000-4000-8000-000000000001';

-- The superuser confirms nothing was written or changed.
\set QUIET on
\connect -reuse-previous=off "dbname=app user=postgres"
\set QUIET off
SELECT organization_id, count(*) AS users, count(*) FILTER (WHERE display_name = 'direct') AS renamed FROM users GROUP BY 1 ORDER BY 1;
SELECT organization_id, count(*) AS agents, count(*) FILTER (WHERE status = 'hijacked') AS hijacked FROM agent_instances GROUP BY 1 ORDER BY 1;
SELECT count(*) AS invoices FROM invoices;
