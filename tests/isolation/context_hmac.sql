-- run-as: superuser
-- The SQL side of the context proof (sql/05_context.sql), checked on its own:
-- tenant.hmac_sha256 against the RFC 4231 test vectors (the same vectors the
-- Rust unit tests in src/context.rs check), the proof of a known answer
-- computed by the Rust side (src/context.rs, proof_known_answer), the key
-- functions' refusals with their SQLSTATEs, and the plan shape: the helper is
-- evaluated once per statement as an initPlan, and stays STABLE.
-- By hand: psql -X -d app -f context_hmac.sql   (as a superuser)

-- RFC 4231, HMAC-SHA-256, test cases 1-4, 6 and 7 (5 is truncated to 128 bits).
SELECT tc, encode(tenant.hmac_sha256(k, d), 'hex') = expected AS matches
  FROM (VALUES
   (1, decode(repeat('0b', 20), 'hex'), convert_to('Hi There', 'UTF8'),
       'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7'),
   (2, convert_to('Jefe', 'UTF8'), convert_to('what do ya want for nothing?', 'UTF8'),
       '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'),
   (3, decode(repeat('aa', 20), 'hex'), decode(repeat('dd', 50), 'hex'),
       '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe'),
   (4, decode('0102030405060708090a0b0c0d0e0f10111213141516171819', 'hex'), decode(repeat('cd', 50), 'hex'),
       '82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b'),
   (6, decode(repeat('aa', 131), 'hex'),
       convert_to('Test Using Larger Than Block-Size Key - Hash Key First', 'UTF8'),
       '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54'),
   (7, decode(repeat('aa', 131), 'hex'),
       convert_to('This is a test using a larger than block-size key and a larger than block-size data. '
                  'The key needs to be hashed before being used by the HMAC algorithm.', 'UTF8'),
       '9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2')
  ) AS v(tc, k, d, expected)
 ORDER BY tc;
SELECT left(encode(tenant.hmac_sha256(decode(repeat('0c', 20), 'hex'), convert_to('Test With Truncation', 'UTF8')), 'hex'), 32)
       = 'a3b6167473100ee06e0c796c2955552b' AS tc5_matches;

-- The known answer of src/context.rs: the same key and fields give the same MAC.
SELECT encode(tenant.hmac_sha256(convert_to('context-key-0123456789abcdef0123456789', 'UTF8'),
         convert_to(concat_ws(E'\n', 'pgtp-context-v1', '1', '4102444800', '127.0.0.1', '54321',
                              'aaaaaaaa-0000-4000-8000-000000000001', 'aaaaaaaa-0001-4000-8000-000000000001'), 'UTF8')), 'hex')
       = '5d5ca6677b652d1ea00cce8388c9a720b18aa6da39a73739bcd5e6df9d55727a' AS rust_known_answer_matches;

BEGIN;
-- Installing keys: the fingerprint is the one the proxy logs at start-up
-- (src/context.rs computes it the same way).
SELECT tenant.add_context_key('known', 'context-key-0123456789abcdef0123456789') AS fingerprint;
SELECT tenant.add_context_key('known', 'context-key-0123456789abcdef0123456789') AS same_key_again;
SELECT key_id, CASE WHEN key_id = 'known' THEN fingerprint END AS fingerprint FROM tenant.context_key_list ORDER BY key_id;
-- Refused: another key under an installed id, a short key, a bad id, an unknown id.
\set VERBOSITY sqlstate
SELECT tenant.add_context_key('known', 'another-key-0123456789abcdef0123456789');
\echo :LAST_ERROR_MESSAGE
ROLLBACK;
BEGIN;
SELECT tenant.add_context_key('short', repeat('k', 31));
\echo :LAST_ERROR_MESSAGE
ROLLBACK;
BEGIN;
SELECT tenant.add_context_key('a,b', repeat('k', 32));
\echo :LAST_ERROR_MESSAGE
ROLLBACK;
BEGIN;
SELECT tenant.remove_context_key('never-installed');
\echo :LAST_ERROR_MESSAGE
ROLLBACK;
\set VERBOSITY default

-- The login role cannot read keys, install or remove them, or switch verification off.
BEGIN;
SET ROLE proxy_login;
\set VERBOSITY sqlstate
SELECT * FROM tenant.context_keys;
\echo :LAST_ERROR_MESSAGE
ROLLBACK;
BEGIN;
SET ROLE proxy_login;
SELECT * FROM tenant.context_key_list;
\echo :LAST_ERROR_MESSAGE
ROLLBACK;
BEGIN;
SET ROLE proxy_login;
SELECT tenant.add_context_key('mine', repeat('k', 40));
\echo :LAST_ERROR_MESSAGE
ROLLBACK;
BEGIN;
SET ROLE proxy_login;
SELECT tenant.remove_context_key('1');
\echo :LAST_ERROR_MESSAGE
ROLLBACK;
BEGIN;
SET ROLE proxy_login;
SELECT tenant.set_context_verification(false);
\echo :LAST_ERROR_MESSAGE
ROLLBACK;
BEGIN;
SET ROLE proxy_login;
SELECT tenant.hmac_sha256('\x00', '\x00');
\echo :LAST_ERROR_MESSAGE
ROLLBACK;
\set VERBOSITY default

-- The helpers: STABLE; verified_context SECURITY DEFINER with a pinned
-- search_path; the two session helpers plain one-line SQL (no SET clause), so
-- the planner inlines them; all owned by tenant_owner.
SELECT p.oid::regprocedure AS function, p.provolatile AS volatility, p.prosecdef AS security_definer,
       p.proconfig AS settings, p.proowner::regrole AS owner
  FROM pg_proc p
 WHERE p.oid IN ('tenant.current_organization_id()'::regprocedure, 'tenant.current_user_id()'::regprocedure,
                 'tenant.verified_context()'::regprocedure, 'tenant.context_status()'::regprocedure)
 ORDER BY 1::text;

-- Once per statement: the policies' (SELECT tenant.current_organization_id())
-- is an initPlan ($0) compared to the indexed column, not a per-row call; the
-- helper is inlined, so the initPlan calls the verifier directly.
BEGIN;
SET LOCAL enable_seqscan = off;
SET ROLE proxy_login;
EXPLAIN (COSTS OFF) SELECT agent_id FROM agent_instances WHERE status = 'running';
EXPLAIN (VERBOSE, COSTS OFF) SELECT agent_id FROM agent_instances WHERE status = 'running';
EXPLAIN (COSTS OFF) UPDATE agent_instances SET status = 'idle' WHERE agent_id = 'a-agent-1';
ROLLBACK;

-- Verification switched off (only explicitly, and tenant.audit() reports it):
-- the settings are trusted without a proof, canonical UUIDs only.
BEGIN;
SELECT tenant.set_context_verification(false);
SET ROLE proxy_login;
SET app.current_organization_id = 'aaaaaaaa-0000-4000-8000-000000000001';
SET app.current_user_id = 'aaaaaaaa-0001-4000-8000-000000000001';
SELECT tenant.context_status(), tenant.current_organization_id() AS organization, tenant.current_user_id() AS user_id;
SELECT organization_id, count(*) AS agents FROM agent_instances GROUP BY 1;
SET app.current_user_id = 'not-a-uuid';
SELECT tenant.current_organization_id() AS organization, tenant.current_user_id() AS user_id;
SET app.current_organization_id = '{aaaaaaaa-0000-4000-8000-000000000001}';
SELECT tenant.current_organization_id() AS organization, count(*) AS agents FROM agent_instances;
ROLLBACK;
-- Back on: the same session values without a proof open nothing.
BEGIN;
SET ROLE proxy_login;
SET app.current_organization_id = 'aaaaaaaa-0000-4000-8000-000000000001';
SELECT tenant.context_status(), tenant.current_organization_id() AS organization, count(*) AS agents FROM agent_instances;
ROLLBACK;
