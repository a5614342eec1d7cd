-- run-as: tenant_a
-- Tenant A tries to write into tenant B: inserting a row for B or moving its
-- own row to B fails with a row-level security error; updating or deleting
-- B's rows touches nothing (UPDATE 0 / DELETE 0).
-- Everything runs in one transaction that is rolled back at the end;
-- ON_ERROR_ROLLBACK lets the script go on after each expected error.
-- By hand: PGPASSWORD=$TOKEN_A psql -X -h 127.0.0.1 -p $PROXY_PORT -U app -d app -f cross_tenant_writes.sql

\set ON_ERROR_ROLLBACK on
BEGIN;

-- 1. INSERT a row that names organization B: refused by WITH CHECK.
INSERT INTO users (organization_id, email) VALUES ('bbbbbbbb-0000-4000-8000-000000000001', 'mole@acme.test');
INSERT INTO agent_instances (organization_id, agent_id, agent_type, status)
VALUES ('bbbbbbbb-0000-4000-8000-000000000001', 'agent-mole', 'tutor', 'running');
INSERT INTO invoices (organization_id, customer_id, number)
VALUES ('bbbbbbbb-0000-4000-8000-000000000001', 'bbbbbbbb-0006-4000-8000-000000000001', 'INV-9999');

-- 2. INSERT organizations rows other than our own: refused (the RLS check
--    runs before the unique check, so B's id and a new id fail the same way).
INSERT INTO organizations (id, name) VALUES ('bbbbbbbb-0000-4000-8000-000000000001', 'Takeover');
INSERT INTO organizations (id, name) VALUES ('cccccccc-0000-4000-8000-000000000001', 'Side org');

-- 3. Move our own row to organization B: refused by WITH CHECK.
UPDATE users SET organization_id = 'bbbbbbbb-0000-4000-8000-000000000001' WHERE id = 'aaaaaaaa-0001-4000-8000-000000000002';
UPDATE agent_instances SET organization_id = 'bbbbbbbb-0000-4000-8000-000000000001';
UPDATE content_generations SET organization_id = 'bbbbbbbb-0000-4000-8000-000000000001' WHERE id = 'aaaaaaaa-000a-4000-8000-000000000001';

-- 4. Reference B's parent rows from our own rows: the composite foreign key
--    (organization_id, x_id) finds no such parent in A. B's real id and an id
--    that exists nowhere give the same error, so nothing is revealed.
INSERT INTO roblox_environments (user_id, name) VALUES ('bbbbbbbb-0001-4000-8000-000000000001', 'Borrowed user');
INSERT INTO roblox_environments (user_id, name) VALUES ('dddddddd-0001-4000-8000-000000000001', 'Unknown user');

-- 5. UPDATE and DELETE B's rows by id, in every table: zero rows touched.

UPDATE organizations SET name = 'pwned' WHERE id = 'bbbbbbbb-0000-4000-8000-000000000001';
UPDATE users SET updated_at = now() WHERE id = 'bbbbbbbb-0001-4000-8000-000000000001';
UPDATE agent_instances SET updated_at = now() WHERE id = 'bbbbbbbb-0002-4000-8000-000000000001';
UPDATE roblox_environments SET updated_at = now() WHERE id = 'bbbbbbbb-0003-4000-8000-000000000001';
UPDATE roblox_sessions SET updated_at = now() WHERE id = 'bbbbbbbb-0004-4000-8000-000000000001';
UPDATE roblox_environment_shares SET updated_at = now() WHERE id = 'bbbbbbbb-0005-4000-8000-000000000001';
UPDATE customers SET updated_at = now() WHERE id = 'bbbbbbbb-0006-4000-8000-000000000001';
UPDATE subscriptions SET updated_at = now() WHERE id = 'bbbbbbbb-0007-4000-8000-000000000001';
UPDATE payment_methods SET updated_at = now() WHERE id = 'bbbbbbbb-0008-4000-8000-000000000001';
UPDATE invoices SET updated_at = now() WHERE id = 'bbbbbbbb-0009-4000-8000-000000000001';
UPDATE content_generations SET updated_at = now() WHERE id = 'bbbbbbbb-000a-4000-8000-000000000001';
UPDATE content_feedback SET updated_at = now() WHERE id = 'bbbbbbbb-000b-4000-8000-000000000001';
UPDATE learning_profiles SET updated_at = now() WHERE id = 'bbbbbbbb-000c-4000-8000-000000000001';
DELETE FROM learning_profiles WHERE id = 'bbbbbbbb-000c-4000-8000-000000000001';
DELETE FROM content_feedback WHERE id = 'bbbbbbbb-000b-4000-8000-000000000001';
DELETE FROM content_generations WHERE id = 'bbbbbbbb-000a-4000-8000-000000000001';
DELETE FROM invoices WHERE id = 'bbbbbbbb-0009-4000-8000-000000000001';
DELETE FROM payment_methods WHERE id = 'bbbbbbbb-0008-4000-8000-000000000001';
DELETE FROM subscriptions WHERE id = 'bbbbbbbb-0007-4000-8000-000000000001';
DELETE FROM customers WHERE id = 'bbbbbbbb-0006-4000-8000-000000000001';
DELETE FROM roblox_environment_shares WHERE id = 'bbbbbbbb-0005-4000-8000-000000000001';
DELETE FROM roblox_sessions WHERE id = 'bbbbbbbb-0004-4000-8000-000000000001';
DELETE FROM roblox_environments WHERE id = 'bbbbbbbb-0003-4000-8000-000000000001';
DELETE FROM agent_instances WHERE id = 'bbbbbbbb-0002-4000-8000-000000000001';
DELETE FROM users WHERE id = 'bbbbbbbb-0001-4000-8000-000000000001';

-- 6. Bulk statements and B's organization by name: zero rows touched.
UPDATE users SET display_name = 'pwned' WHERE organization_id = 'bbbbbbbb-0000-4000-8000-000000000001';
DELETE FROM invoices WHERE organization_id = 'bbbbbbbb-0000-4000-8000-000000000001';
UPDATE agent_instances a SET status = 'hijacked'
  FROM users u
 WHERE u.id = 'bbbbbbbb-0001-4000-8000-000000000001' AND a.user_id = u.id;

-- 7. Unqualified bulk statements touch only A's rows (2 agents, 1 feedback row).
UPDATE agent_instances SET status = status;
DELETE FROM content_feedback;

-- 8. An upsert aimed at B's primary key does not touch B's row: there is no
--    conflict inside A, so a new row is inserted in A.
INSERT INTO customers (id, email) VALUES ('bbbbbbbb-0006-4000-8000-000000000001', 'upsert@acme.test')
ON CONFLICT (organization_id, id) DO UPDATE SET email = EXCLUDED.email
RETURNING organization_id, id, email;

-- 9. TRUNCATE ignores row level security, so tenants do not have it.
TRUNCATE users;

ROLLBACK;
