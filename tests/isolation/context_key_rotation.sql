-- run-as: tenant_a
-- requires: proxy
-- Key rotation without downtime (the procedure in sql/README.md): a session
-- opened with the old key keeps working while both keys are installed; new
-- sessions of a proxy restarted with the new key work once the DBA has
-- installed it (and see nothing before: fail closed); a removed key stops
-- working at the next statement, while the session stays open. This session
-- comes through the proxy with key 1; tests/isolation/run.sh also runs a
-- proxy with key 2 (ISO_PROXY2_PORT), standing for the restarted proxy. The
-- DBA steps run as the superuser with psql (\!). At the end key 1 is
-- installed again and key 2 removed, as the suite found them.
-- By hand: with the ISO_* variables tests/isolation/run.sh exports,
--   PGPASSWORD=$ISO_TOKEN_A psql -X -h 127.0.0.1 -p $ISO_PROXY_PORT -U app -d app -f context_key_rotation.sql

-- Key 1 only. This session verifies; the key-2 proxy's sessions see nothing.
\! psql -X -At -d app -c "SELECT key_id FROM tenant.context_key_list ORDER BY 1"
SELECT tenant.context_status(), organization_id, count(*) AS agents FROM agent_instances GROUP BY 1, 2;
\! PGPASSWORD="$ISO_TOKEN_A" psql -X -At -h 127.0.0.1 -p "$ISO_PROXY2_PORT" -U app -d app -c "SELECT tenant.context_status(), count(*) FROM agent_instances"

-- The DBA installs key 2: both keys are active.
\! echo "SELECT tenant.add_context_key('2', :'key') IS NOT NULL AS added" | psql -X -At -d app -v key="$(cat "$ISO_KEY2_FILE")"
\! psql -X -At -d app -c "SELECT key_id FROM tenant.context_key_list ORDER BY 1"
-- New sessions through the key-2 proxy work ...
\! PGPASSWORD="$ISO_TOKEN_A" psql -X -At -h 127.0.0.1 -p "$ISO_PROXY2_PORT" -U app -d app -c "SELECT tenant.context_status(), organization_id, count(*) FROM agent_instances GROUP BY 1, 2"
-- ... and this key-1 session keeps working.
SELECT tenant.context_status(), organization_id, count(*) AS agents FROM agent_instances GROUP BY 1, 2;

-- The DBA retires key 1: this session sees nothing and cannot write.
\! psql -X -At -d app -c "SELECT tenant.remove_context_key('1')" -c "SELECT key_id FROM tenant.context_key_list ORDER BY 1"
SELECT tenant.context_status(), tenant.current_organization_id() AS organization;
SELECT count(*) AS agents FROM agent_instances;
INSERT INTO agent_instances (agent_id, agent_type, status) VALUES ('rotation-agent', 'tutor', 'running');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
UPDATE agent_instances SET status = 'hijacked';
-- The session itself is still open; key-2 sessions still work.
SELECT 1 AS still_connected;
\! PGPASSWORD="$ISO_TOKEN_A" psql -X -At -h 127.0.0.1 -p "$ISO_PROXY2_PORT" -U app -d app -c "SELECT tenant.context_status(), organization_id, count(*) FROM agent_instances GROUP BY 1, 2"
-- Removing a key that is not installed is an error the DBA sees.
\! psql -X -At -d app -c "SELECT tenant.remove_context_key('1')" 2>&1

-- Back to the suite's state: key 1 installed again, key 2 removed.
\! echo "SELECT tenant.add_context_key('1', :'key') IS NOT NULL AS added; SELECT tenant.remove_context_key('2');" | psql -X -At -d app -v key="$(cat "$ISO_KEY1_FILE")"
\! psql -X -At -d app -c "SELECT key_id FROM tenant.context_key_list ORDER BY 1"
SELECT tenant.context_status(), organization_id, count(*) AS agents FROM agent_instances GROUP BY 1, 2;
