-- run-as: tenant_a
-- Session resets that drivers and pools send keep the tenant: the proxy gives
-- the organization as a startup parameter, which is the setting's reset value.
-- Switching row security off does not bypass it; PostgreSQL raises instead.
-- By hand: PGPASSWORD=$TOKEN_A psql -X -h 127.0.0.1 -p $PROXY_PORT -U app -d app -f session_reset.sql

SELECT tenant.current_organization_id() AS organization, count(*) AS users FROM users;

RESET ALL;
SELECT tenant.current_organization_id() AS organization, count(*) AS users FROM users;

DISCARD ALL;
SELECT tenant.current_organization_id() AS organization, count(*) AS users FROM users;
-- The context proof is a startup value too: it survives the resets.
SELECT tenant.context_status();

-- Ordinary settings applications change are fine and do not affect isolation.
SET statement_timeout = '5s';
SET search_path = public;
SELECT set_config('application_name', 'isolation-suite', false) AS application_name;
SELECT tenant.current_organization_id() AS organization, count(*) AS users FROM users;
RESET statement_timeout;
RESET search_path;

-- Prepared statements switch to a generic plan after five executions; the
-- helper is STABLE, so the plan still reads the session's organization.
PREPARE agents_by_status(text) AS
  SELECT organization_id, agent_id FROM agent_instances WHERE status = $1 ORDER BY agent_id;
EXECUTE agents_by_status('running');
EXECUTE agents_by_status('running');
EXECUTE agents_by_status('running');
EXECUTE agents_by_status('running');
EXECUTE agents_by_status('running');
EXECUTE agents_by_status('running');
EXECUTE agents_by_status('stopped');
DEALLOCATE agents_by_status;
