-- run-as: superuser
-- A DBA puts an existing table under isolation with one call, then checks it
-- with tenant.audit() and as a tenant. Rolled back at the end.
-- By hand: psql -X -d app -f admin_enable_isolation.sql   (as a superuser)

BEGIN;

-- An application table that predates multi-tenancy.
CREATE TABLE public.classroom_notes (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    body          text NOT NULL,
    created_by_id uuid,
    updated_by_id uuid,
    created_at    timestamptz,
    updated_at    timestamptz
);
INSERT INTO classroom_notes (id, body) VALUES
  ('aaaaaaaa-00ff-4000-8000-000000000001', 'Acme note'),
  ('bbbbbbbb-00ff-4000-8000-000000000001', 'Bravo note');

-- Step 1: add the tenant column and backfill it (from the application's own
-- knowledge; here from the id prefix).
ALTER TABLE classroom_notes ADD COLUMN organization_id uuid;
UPDATE classroom_notes
   SET organization_id = CASE WHEN id::text LIKE 'aaaaaaaa%' THEN 'aaaaaaaa-0000-4000-8000-000000000001'::uuid
                              ELSE 'bbbbbbbb-0000-4000-8000-000000000001'::uuid END;

-- Step 2: one call.
SELECT tenant.enable_isolation('public.classroom_notes');

-- What it did.
SELECT relrowsecurity AS rls_enabled, relforcerowsecurity AS rls_forced, relowner::regrole AS owner
  FROM pg_class WHERE oid = 'public.classroom_notes'::regclass;
SELECT policyname, permissive, roles, cmd, qual, with_check
  FROM pg_policies WHERE tablename = 'classroom_notes' ORDER BY policyname;
SELECT column_name, is_nullable, column_default
  FROM information_schema.columns
 WHERE table_name = 'classroom_notes' AND column_default IS NOT NULL ORDER BY column_name;
SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'classroom_notes' ORDER BY indexname;
SELECT grantee, string_agg(privilege_type, ', ' ORDER BY privilege_type) AS privileges
  FROM information_schema.role_table_grants
 WHERE table_name = 'classroom_notes' AND grantee = 'tenant_app' GROUP BY grantee;

-- Step 3: the audit points at what one call cannot fix: the old global
-- primary key on id.
SELECT severity, check_name, object_name FROM tenant.audit();
ALTER TABLE classroom_notes DROP CONSTRAINT classroom_notes_pkey,
                            ADD PRIMARY KEY (organization_id, id);
SELECT * FROM tenant.audit();

-- Calling it again changes nothing.
SELECT tenant.enable_isolation('public.classroom_notes');
SELECT * FROM tenant.audit();

-- As a tenant (the same role and settings the proxy uses, with a context
-- proof for this Unix-socket connection, minted with key 1 as the proxy would).
\set proof `"$ISO_PROXY_BIN" context-proof --context-key-file "$ISO_KEY1_FILE" --org aaaaaaaa-0000-4000-8000-000000000001 --user aaaaaaaa-0001-4000-8000-000000000001 --unix`
SET ROLE proxy_login;
SET app.current_organization_id = 'aaaaaaaa-0000-4000-8000-000000000001';
SET app.current_user_id = 'aaaaaaaa-0001-4000-8000-000000000001';
SELECT set_config('app.context_proof', :'proof', false) <> '' AS proof_set, tenant.context_status();
SELECT organization_id, body FROM classroom_notes;
INSERT INTO classroom_notes (body) VALUES ('written by Alice')
RETURNING organization_id, body, created_by_id, created_at IS NOT NULL AS has_created_at;
SELECT count(*) AS visible_notes FROM classroom_notes;
RESET ROLE;

ROLLBACK;
