-- run-as: login_role
-- An expired proof closes access while the session stays open: the helpers
-- compare the proof's expiry with the statement's start. Here a connection
-- gets a proof valid for 2 seconds (minted for it with key 1, as the proxy
-- would with the token's exp plus leeway), sees its rows, and after the
-- expiry sees none and cannot write; the session itself is still usable.
-- (Through the proxy the session is closed at the same moment: FATAL 28P01.)
-- By hand: with the ISO_* variables tests/isolation/run.sh exports,
--   PGPASSWORD=$ISO_LOGIN_PASSWORD psql -X -h 127.0.0.1 -p $ISO_PG_PORT -U proxy_login -d app -f context_expiry.sql
\getenv pg_port ISO_PG_PORT
\getenv login_password ISO_LOGIN_PASSWORD
SELECT format('host=127.0.0.1 port=%s user=proxy_login dbname=app password=%s options=%L', :'pg_port', :'login_password',
              '-c app.current_organization_id=aaaaaaaa-0000-4000-8000-000000000001 -c app.current_user_id=aaaaaaaa-0001-4000-8000-000000000001') AS conn \gset
\set QUIET on
\connect :conn
\unset conn
\set QUIET off
SELECT host(inet_client_addr()) AS client_addr, inet_client_port() AS client_port \gset
\set proof `"$ISO_PROXY_BIN" context-proof --context-key-file "$ISO_KEY1_FILE" --org aaaaaaaa-0000-4000-8000-000000000001 --user aaaaaaaa-0001-4000-8000-000000000001 --ttl 2 --client-addr :'client_addr' --client-port :'client_port'`
SELECT set_config('app.context_proof', :'proof', false) <> '' AS proof_set;
SELECT tenant.context_status(), tenant.current_organization_id() AS organization, tenant.current_user_id() AS user_id;
SELECT organization_id, count(*) AS agents FROM agent_instances GROUP BY 1;
INSERT INTO agent_instances (agent_id, agent_type, status) VALUES ('expiry-agent', 'tutor', 'running')
RETURNING organization_id, agent_id;
SELECT pg_sleep(3);
SELECT tenant.context_status(), tenant.current_organization_id() AS organization, tenant.current_user_id() AS user_id;
SELECT organization_id, count(*) AS agents FROM agent_instances GROUP BY 1;
INSERT INTO agent_instances (agent_id, agent_type, status) VALUES ('expiry-agent-2', 'tutor', 'running');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
UPDATE agent_instances SET status = 'hijacked';
DELETE FROM agent_instances WHERE agent_id = 'expiry-agent';
-- The session is still open.
SELECT 1 AS still_connected;

-- Clean up as the superuser.
\set QUIET on
\connect -reuse-previous=off "dbname=app user=postgres"
\set QUIET off
DELETE FROM agent_instances WHERE agent_id = 'expiry-agent' RETURNING organization_id, agent_id, status;
