-- run-as: login_role
-- Connecting DIRECTLY to PostgreSQL as the proxy's login role, without the
-- proxy, shows nothing: with the organization setting missing, empty or not a
-- UUID, the helpers return NULL, every policy is false and inserts fail.
-- By hand (login password, straight to PostgreSQL, no PGOPTIONS):
--   PGPASSWORD=$LOGIN_PASSWORD psql -X -h 127.0.0.1 -p $PG_PORT -U proxy_login -d app -f login_role_direct.sql
-- (section 8 also needs ISO_PROXY_BIN and ISO_KEY1_FILE, as tests/isolation/run.sh sets them)
-- The script reconnects with libpq's "options" parameter (what PGOPTIONS
-- sets), which is exactly how the proxy passes the organization: startup
-- parameters of the session.

-- 1. No setting at all.
SELECT current_user, current_setting('app.current_organization_id', true) AS organization_setting,
       tenant.current_organization_id() AS organization;
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
INSERT INTO users (organization_id, email)
VALUES ('aaaaaaaa-0000-4000-8000-000000000001', 'direct@example.com');
UPDATE users SET display_name = 'direct';
DELETE FROM invoices;

-- 2. The setting present but empty (what RESET leaves when there was no startup value).
\connect -reuse-previous=on "options='-c app.current_organization_id= -c app.current_user_id='"
SELECT current_setting('app.current_organization_id', true) AS organization_setting,
       tenant.current_organization_id() AS organization, tenant.current_user_id() AS user_id;
SELECT count(*) AS users FROM users;
SELECT count(*) AS organizations FROM organizations;
SELECT count(*) AS agents FROM agent_instances;
INSERT INTO users (email) VALUES ('direct@example.com');

-- 3. Garbage.
\connect -reuse-previous=on "options='-c app.current_organization_id=not-a-uuid -c app.current_user_id=not-a-uuid'"
SELECT current_setting('app.current_organization_id', true) AS organization_setting,
       tenant.current_organization_id() AS organization, tenant.current_user_id() AS user_id;
SELECT count(*) AS users FROM users;
SELECT count(*) AS organizations FROM organizations;
SELECT count(*) AS agents FROM agent_instances;
INSERT INTO users (email) VALUES ('direct@example.com');

-- 4. A UUID one digit short.
\connect -reuse-previous=on "options='-c app.current_organization_id=aaaaaaaa-0000-4000-8000-00000000000 -c app.current_user_id=aaaaaaaa-0000-4000-8000-00000000000'"
SELECT current_setting('app.current_organization_id', true) AS organization_setting,
       tenant.current_organization_id() AS organization, tenant.current_user_id() AS user_id;
SELECT count(*) AS users FROM users;
SELECT count(*) AS organizations FROM organizations;
SELECT count(*) AS agents FROM agent_instances;
INSERT INTO users (email) VALUES ('direct@example.com');

-- 5. A valid UUID with trailing junk.
\connect -reuse-previous=on "options='-c app.current_organization_id=aaaaaaaa-0000-4000-8000-000000000001x -c app.current_user_id=aaaaaaaa-0000-4000-8000-000000000001x'"
SELECT current_setting('app.current_organization_id', true) AS organization_setting,
       tenant.current_organization_id() AS organization, tenant.current_user_id() AS user_id;
SELECT count(*) AS users FROM users;
SELECT count(*) AS organizations FROM organizations;
SELECT count(*) AS agents FROM agent_instances;
INSERT INTO users (email) VALUES ('direct@example.com');

-- 6. A UUID in braces (PostgreSQL's uuid input would accept it; the helper only takes the canonical form).
\connect -reuse-previous=on "options='-c app.current_organization_id={aaaaaaaa-0000-4000-8000-000000000001} -c app.current_user_id={aaaaaaaa-0000-4000-8000-000000000001}'"
SELECT current_setting('app.current_organization_id', true) AS organization_setting,
       tenant.current_organization_id() AS organization, tenant.current_user_id() AS user_id;
SELECT count(*) AS users FROM users;
SELECT count(*) AS organizations FROM organizations;
SELECT count(*) AS agents FROM agent_instances;
INSERT INTO users (email) VALUES ('direct@example.com');

-- 7. Setting the value in-session to empty or garbage also shows nothing
--    (through the proxy the guard refuses these SETs; here only the
--    database's own behaviour is tested).
SET app.current_organization_id = '';
SELECT count(*) AS users FROM users;
SET app.current_organization_id = 'x'' OR true --';
SELECT count(*) AS users FROM users;
RESET app.current_organization_id;
SELECT count(*) AS users FROM users;

-- 8. A NOINHERIT login role gets tenant_app's privileges through its
--    role-level setting "role = tenant_app" (see sql/00_roles.sql), and is
--    filtered exactly like proxy_login. Here with a valid organization and a
--    context proof for this connection, as the proxy would send them (the
--    proof minted with key 1 for the address and port the server sees).
\connect -reuse-previous=on "options='-c app.current_organization_id=aaaaaaaa-0000-4000-8000-000000000001 -c app.current_user_id=' user=proxy_login_noinherit"
SELECT host(inet_client_addr()) AS client_addr, inet_client_port() AS client_port \gset
\set proof `"$ISO_PROXY_BIN" context-proof --context-key-file "$ISO_KEY1_FILE" --org aaaaaaaa-0000-4000-8000-000000000001 --client-addr :'client_addr' --client-port :'client_port'`
SELECT set_config('app.context_proof', :'proof', false) <> '' AS proof_set, tenant.context_status();
SELECT session_user, current_user;
SELECT organization_id, count(*) FROM users GROUP BY 1;
RESET ROLE;
SELECT session_user, current_user;
SELECT organization_id, count(*) FROM agent_instances GROUP BY 1;
