-- run-as: login_role
-- requires: proxy
-- A proof taken from an organization B session and replayed in another
-- session does not open organization B: the proof is bound to the upstream
-- connection it was made for (client address and port as the server sees
-- them). Replayed (a) as the startup options of a direct login with every
-- app.* value of the B session, (b) with SET inside a session that verifies
-- for A, and (c) through the proxy, whose guard refuses it (42501).
-- By hand: with the ISO_* variables tests/isolation/run.sh exports,
--   PGPASSWORD=$ISO_LOGIN_PASSWORD psql -X -h 127.0.0.1 -p $ISO_PG_PORT -U proxy_login -d app -f context_replay.sql
\getenv pg_port ISO_PG_PORT
\getenv proxy_port ISO_PROXY_PORT
\getenv login_password ISO_LOGIN_PASSWORD
\getenv token_a ISO_TOKEN_A
\getenv token_b ISO_TOKEN_B

-- The organization B session, through the proxy.
SELECT format('host=127.0.0.1 port=%s user=app dbname=app password=%s', :'proxy_port', :'token_b') AS conn \gset
\set QUIET on
\connect :conn
\unset conn
\set QUIET off
SELECT tenant.context_status(), organization_id, count(*) AS users FROM users GROUP BY 1, 2;
SELECT string_agg(format('-c %s=%s', name, current_setting(name)), ' ' ORDER BY name) AS opts_b,
       current_setting('app.context_proof') AS proof_b
  FROM (VALUES ('app.current_organization_id'), ('app.current_user_id'), ('app.context_proof')) AS v(name) \gset

-- (a) A direct login with all of B's values, proof included.
SELECT format('host=127.0.0.1 port=%s user=proxy_login dbname=app password=%s options=%L',
              :'pg_port', :'login_password', :'opts_b') AS conn \gset
\set QUIET on
\connect :conn
\unset conn
\set QUIET off
SELECT current_setting('app.current_organization_id') AS organization_setting,
       current_setting('app.context_proof') = :'proof_b' AS same_proof,
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

-- (b) A session that verifies for A takes over B's values with SET.
SELECT format('host=127.0.0.1 port=%s user=proxy_login dbname=app password=%s options=%L', :'pg_port', :'login_password',
              '-c app.current_organization_id=aaaaaaaa-0000-4000-8000-000000000001 -c app.current_user_id=aaaaaaaa-0001-4000-8000-000000000001') AS conn \gset
\set QUIET on
\connect :conn
\unset conn
\set QUIET off
SELECT host(inet_client_addr()) AS client_addr, inet_client_port() AS client_port \gset
\set proof `"$ISO_PROXY_BIN" context-proof --context-key-file "$ISO_KEY1_FILE" --org aaaaaaaa-0000-4000-8000-000000000001 --user aaaaaaaa-0001-4000-8000-000000000001 --client-addr :'client_addr' --client-port :'client_port'`
SELECT set_config('app.context_proof', :'proof', false) <> '' AS proof_set, tenant.context_status();
SELECT set_config('app.current_organization_id', 'bbbbbbbb-0000-4000-8000-000000000001', false) AS organization_setting,
       set_config('app.current_user_id', 'bbbbbbbb-0001-4000-8000-000000000001', false) AS user_setting,
       set_config('app.context_proof', :'proof_b', false) = :'proof_b' AS proof_b_set;
SELECT tenant.current_organization_id() AS organization, tenant.current_user_id() AS user_id, tenant.context_status();
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

-- (c) Through the proxy, as tenant A: the guard refuses to move the proof.
SELECT format('host=127.0.0.1 port=%s user=app dbname=app password=%s', :'proxy_port', :'token_a') AS conn \gset
\set QUIET on
\connect :conn
\unset conn
\set QUIET off
SELECT set_config('app.context_proof', :'proof_b', false) IS NOT NULL;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SET app.context_proof = 'v1,1,0,unix,,00';
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET app.context_proof;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT tenant.context_status(), organization_id, count(*) AS users FROM users GROUP BY 1, 2;

-- The superuser confirms nothing was written or changed.
\set QUIET on
\connect -reuse-previous=off "dbname=app user=postgres"
\set QUIET off
SELECT organization_id, count(*) AS users, count(*) FILTER (WHERE display_name = 'direct') AS renamed FROM users GROUP BY 1 ORDER BY 1;
SELECT organization_id, count(*) AS agents, count(*) FILTER (WHERE status = 'hijacked') AS hijacked FROM agent_instances GROUP BY 1 ORDER BY 1;
SELECT count(*) AS invoices FROM invoices;
