-- run-as: tenant_a
-- requires: proxy
-- Through the proxy, the pinned settings cannot be moved: the guard refuses
-- every form with SQLSTATE 42501 (the database alone could not prevent it:
-- any role may SET a placeholder setting; see sql/README.md). Only the
-- SQLSTATE is shown, so the guard's wording can evolve.
-- By hand: PGPASSWORD=$TOKEN_A psql -X -h 127.0.0.1 -p $PROXY_PORT -U app -d app -f proxy_pinned_setting.sql

\set VERBOSITY sqlstate
SET app.current_organization_id = 'bbbbbbbb-0000-4000-8000-000000000001';
SET SESSION app.current_organization_id TO 'bbbbbbbb-0000-4000-8000-000000000001';
SELECT set_config('app.current_organization_id', 'bbbbbbbb-0000-4000-8000-000000000001', false);
RESET app.current_organization_id;
SET app.current_user_id = 'bbbbbbbb-0001-4000-8000-000000000001';
BEGIN;
SET LOCAL app.current_organization_id = 'bbbbbbbb-0000-4000-8000-000000000001';
ROLLBACK;
\set VERBOSITY default

-- Still organization A, still only A's rows.
SELECT current_setting('app.current_organization_id') AS organization,
       current_setting('app.current_user_id') AS user_id;
SELECT organization_id, count(*) FROM users GROUP BY 1;
