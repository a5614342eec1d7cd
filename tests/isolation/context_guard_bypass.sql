-- run-as: login_role
-- requires: proxy
-- A guard bypass, mimicked: whatever reaches the server outside the proxy's
-- control, the organization it names is trusted only with a proof made for
-- this connection. (a) A direct connection as the login role carrying every
-- app.* value of a live organization A session, read from that session, but
-- with the organization changed to B: no rows, no writes. (b) The same values
-- unchanged: still nothing, since A's proof is bound to the proxy's own
-- upstream connection (address and port as the server sees them). (c) A
-- connection that verifies for A (a proof minted for it, as the proxy would),
-- then SET app.current_organization_id to B inside it: no rows, no writes.
-- By hand: with the ISO_* variables tests/isolation/run.sh exports,
--   PGPASSWORD=$ISO_LOGIN_PASSWORD psql -X -h 127.0.0.1 -p $ISO_PG_PORT -U proxy_login -d app -f context_guard_bypass.sql
\getenv pg_port ISO_PG_PORT
\getenv proxy_port ISO_PROXY_PORT
\getenv login_password ISO_LOGIN_PASSWORD
\getenv token_a ISO_TOKEN_A
\getenv token_b ISO_TOKEN_B

-- The organization A session, through the proxy: its app.* settings.
SELECT format('host=127.0.0.1 port=%s user=app dbname=app password=%s', :'proxy_port', :'token_a') AS conn \gset
\set QUIET on
\connect :conn
\unset conn
\set QUIET off
SELECT tenant.context_status(), count(*) AS users FROM users;
-- The app.* settings the proxy pins (placeholder settings are not listed in
-- pg_settings, so they are named).
SELECT string_agg(format('-c %s=%s', name, current_setting(name)), ' ' ORDER BY name) AS opts_a,
       string_agg(format('-c %s=%s', name, CASE WHEN name = 'app.current_organization_id'
                                                THEN 'bbbbbbbb-0000-4000-8000-000000000001' ELSE current_setting(name) END),
                  ' ' ORDER BY name) AS opts_b
  FROM (VALUES ('app.current_organization_id'), ('app.current_user_id'), ('app.context_proof')) AS v(name) \gset

-- (a) Every app.* value of the A session, organization changed to B.
SELECT format('host=127.0.0.1 port=%s user=proxy_login dbname=app password=%s options=%L',
              :'pg_port', :'login_password', :'opts_b') AS conn \gset
\set QUIET on
\connect :conn
\unset conn
\set QUIET off
SELECT current_setting('app.current_organization_id') AS organization_setting,
       tenant.current_organization_id() AS organization, tenant.context_status();
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

-- (b) Every app.* value of the A session, unchanged.
SELECT format('host=127.0.0.1 port=%s user=proxy_login dbname=app password=%s options=%L',
              :'pg_port', :'login_password', :'opts_a') AS conn \gset
\set QUIET on
\connect :conn
\unset conn
\set QUIET off
SELECT current_setting('app.current_organization_id') AS organization_setting,
       tenant.current_organization_id() AS organization, tenant.context_status();
SELECT count(*) AS users FROM users;
SET app.current_organization_id = 'bbbbbbbb-0000-4000-8000-000000000001';
SELECT tenant.current_organization_id() AS organization, tenant.context_status();
SELECT count(*) AS users FROM users;

-- (c) A connection verified for A, then SET to organization B inside it.
SELECT format('host=127.0.0.1 port=%s user=proxy_login dbname=app password=%s options=%L', :'pg_port', :'login_password',
              '-c app.current_organization_id=aaaaaaaa-0000-4000-8000-000000000001 -c app.current_user_id=aaaaaaaa-0001-4000-8000-000000000001') AS conn \gset
\set QUIET on
\connect :conn
\unset conn
\set QUIET off
SELECT host(inet_client_addr()) AS client_addr, inet_client_port() AS client_port \gset
\set proof `"$ISO_PROXY_BIN" context-proof --context-key-file "$ISO_KEY1_FILE" --org aaaaaaaa-0000-4000-8000-000000000001 --user aaaaaaaa-0001-4000-8000-000000000001 --client-addr :'client_addr' --client-port :'client_port'`
SELECT set_config('app.context_proof', :'proof', false) <> '' AS proof_set, tenant.context_status();
SELECT organization_id, count(*) AS users FROM users GROUP BY 1;
SET app.current_organization_id = 'bbbbbbbb-0000-4000-8000-000000000001';
SELECT current_setting('app.current_organization_id') AS organization_setting,
       tenant.current_organization_id() AS organization, tenant.context_status();
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
-- Back to A's own values: verified again (the proof was never the problem).
SET app.current_organization_id = 'aaaaaaaa-0000-4000-8000-000000000001';
SELECT tenant.context_status(), count(*) AS users FROM users;

-- The superuser confirms nothing was written or changed.
\set QUIET on
\connect -reuse-previous=off "dbname=app user=postgres"
\set QUIET off
SELECT organization_id, count(*) AS users, count(*) FILTER (WHERE display_name = 'direct') AS renamed FROM users GROUP BY 1 ORDER BY 1;
SELECT organization_id, count(*) AS agents, count(*) FILTER (WHERE status = 'hijacked') AS hijacked FROM agent_instances GROUP BY 1 ORDER BY 1;
SELECT count(*) AS invoices FROM invoices;
