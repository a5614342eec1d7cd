-- 05_context.sql: the verified tenant context. The proxy signs what it pins;
-- PostgreSQL checks the signature before any policy trusts the organization.
--
-- Every role can change any app.* setting, so a session that reaches the
-- server with app.current_organization_id set to another organization (a
-- guard bypass, or a direct login with the proxy's login role) would be
-- trusted by the policies. With this file, the helpers in 10_helpers.sql
-- return the organization and user only when the session also carries
--   app.context_proof = v1,<key id>,<expires>,<client addr>,<client port>,<mac>
-- where <mac> is HMAC-SHA256, under a key shared by the proxy and this
-- database, over
--   'pgtp-context-v1' \n key id \n expires \n client addr \n client port \n
--   organization \n user
-- (the exact setting texts, joined with newlines), and
--   * the key id names a key in tenant.context_keys,
--   * expires (Unix seconds) is later than the statement's start,
--   * the binding matches this connection as the server sees it:
--     inet_client_addr()/inet_client_port() for TCP, or 'unix' and an empty
--     port for a Unix-domain socket (where both are NULL).
-- Otherwise both helpers return NULL: reads see no rows, writes fail WITH
-- CHECK. The proxy knows its own address and port before it sends the
-- startup packet; a session cannot choose the port the server sees. See
-- docs/threat-model.md for what the binding does and does not stop.
--
-- Keys live in tenant.context_keys, owned by tenant_owner; tenant roles have
-- no privilege on it. Only the SECURITY DEFINER function
-- tenant.verified_context() reads it, and it returns only the verified
-- organization and user of the calling session, never key material. DBAs
-- install and retire keys with tenant.add_context_key(id, key) and
-- tenant.remove_context_key(id) (superuser or tenant_owner); several keys may
-- be active at once, which is how a key is rotated without downtime
-- (sql/README.md).
--
-- Verification can be switched off only explicitly, with
-- tenant.set_context_verification(false); tenant.audit() reports it. It is on
-- in a fresh database.
--
-- Plain SQL and PL/pgSQL only, with the built-in sha256(): no extension.
-- Idempotent: tables and the settings row are created only when missing.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;
BEGIN;

-- Installed keys, stored as the two HMAC pads (key XOR 0x36.., key XOR 0x5c..)
-- so a verification costs two sha256() calls and no byte loop. The pads are
-- as secret as the key itself.
CREATE TABLE IF NOT EXISTS tenant.context_keys (
    key_id      text PRIMARY KEY CHECK (key_id OPERATOR(pg_catalog.~) '^[A-Za-z0-9_-]{1,64}$'),
    inner_pad   bytea NOT NULL CHECK (pg_catalog.length(inner_pad) = 64),
    outer_pad   bytea NOT NULL CHECK (pg_catalog.length(outer_pad) = 64),
    -- First 8 bytes of HMAC(key, 'pg-tenant-proxy context key fingerprint'),
    -- hex: the proxy logs the same value at start-up, so a DBA can tell which
    -- key a proxy holds without seeing either key.
    fingerprint text NOT NULL,
    added_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);
ALTER TABLE tenant.context_keys OWNER TO tenant_owner;
REVOKE ALL ON tenant.context_keys FROM PUBLIC;
COMMENT ON TABLE tenant.context_keys IS
  'Keys that sign the tenant context (app.context_proof); read only by tenant.verified_context().';

-- One row: whether the helpers verify the proof. Missing row = verify.
CREATE TABLE IF NOT EXISTS tenant.context_settings (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    verification boolean NOT NULL DEFAULT true
);
ALTER TABLE tenant.context_settings OWNER TO tenant_owner;
REVOKE ALL ON tenant.context_settings FROM PUBLIC;
INSERT INTO tenant.context_settings (singleton) VALUES (true) ON CONFLICT DO NOTHING;
COMMENT ON TABLE tenant.context_settings IS
  'verification = false makes the helpers trust app.* settings without a proof (tenant.audit() reports it).';

-- tenant.hmac_pad(key, pad): the key, zero-filled to 64 bytes, each byte XOR pad.
CREATE OR REPLACE FUNCTION tenant.hmac_pad(key bytea, pad integer)
RETURNS bytea
LANGUAGE sql
IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT decode(string_agg(lpad(to_hex((CASE WHEN i < length(key) THEN get_byte(key, i) ELSE 0 END) # pad), 2, '0'),
                           '' ORDER BY i), 'hex')
    FROM generate_series(0, 63) AS i
$fn$;

-- tenant.hmac_sha256(key, message): HMAC-SHA256 (RFC 2104) with the built-in
-- sha256(). Keys longer than the 64-byte block are hashed first. Checked
-- against the RFC 4231 test vectors in tests/isolation/context_hmac.sql.
CREATE OR REPLACE FUNCTION tenant.hmac_sha256(key bytea, message bytea)
RETURNS bytea
LANGUAGE sql
IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT sha256(tenant.hmac_pad(k, 92) || sha256(tenant.hmac_pad(k, 54) || message))
    FROM (SELECT CASE WHEN length(key) > 64 THEN sha256(key) ELSE key END AS k) AS s
$fn$;

-- tenant.verified_context(): the calling session's organization and user when
-- app.context_proof verifies (see the top of this file), else two NULLs.
-- With verification switched off: the settings as they are (canonical UUIDs
-- only). Never raises on session input, so an attacker cannot tell a bad
-- proof from no rows.
--
-- SECURITY DEFINER (owner tenant_owner) so it can read tenant.context_keys;
-- search_path pinned; it takes no arguments and returns no key material, so
-- it is neither a signing nor a key oracle. PL/pgSQL so its plans are cached
-- for the session. STABLE: evaluated once per statement through the
-- (SELECT ...) initPlans of the policies.
--
-- Cost: the accepted path is one indexed lookup and two sha256() calls.
-- Nothing but the field count is checked before the MAC: the MAC covers the
-- fields, so once it matches they are known to be the proxy's (a decimal
-- expiry, an address, UUIDs) and are cast without further checks. The MAC
-- is compared as hex text; see docs/threat-model.md on timing.
CREATE OR REPLACE FUNCTION tenant.verified_context(OUT organization_id uuid, OUT user_id uuid)
LANGUAGE plpgsql
STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  org_text text := current_setting('app.current_organization_id', true);
  usr_text text := coalesce(current_setting('app.current_user_id', true), '');
  f        text[] := string_to_array(current_setting('app.context_proof', true), ',');
  k        record;
BEGIN
  IF cardinality(f) = 6 AND f[1] = 'v1' THEN
    SELECT c.inner_pad, c.outer_pad INTO k FROM tenant.context_keys AS c WHERE c.key_id = f[2];
    -- Nested IFs: the casts below must run only after the MAC matched.
    IF FOUND AND encode(sha256(k.outer_pad || sha256(k.inner_pad || convert_to(
         concat_ws(E'\n', 'pgtp-context-v1', f[2], f[3], f[4], f[5], org_text, usr_text), 'UTF8'))), 'hex') = f[6] THEN
      IF f[3]::bigint > extract(epoch FROM statement_timestamp())
         AND (CASE WHEN inet_client_port() IS NULL THEN f[4] = 'unix' AND f[5] = ''
                   ELSE f[4] <> 'unix' AND f[5] = inet_client_port()::text AND f[4]::inet = inet_client_addr() END) THEN
        organization_id := org_text::uuid;
        user_id := nullif(usr_text, '')::uuid;
      END IF;
      RETURN;
    END IF;
  END IF;
  -- Not verified: the settings count only when verification is switched off,
  -- and then only canonical UUIDs (the test of tenant.uuid_or_null(), written
  -- out: a call to that SQL function would be planned on every statement).
  IF (SELECT s.verification FROM tenant.context_settings AS s) IS FALSE
     AND org_text ~ '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$' THEN
    organization_id := org_text::uuid;
    IF usr_text ~ '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$' THEN
      user_id := usr_text::uuid;
    END IF;
  END IF;
END
$fn$;

-- tenant.context_status(): why this session's context does or does not
-- verify, for operators diagnosing a setup (for example a NAT between proxy
-- and database, which changes the address the server sees). One of:
-- 'verified', 'verification off', 'no proof', 'malformed proof', 'expired',
-- 'unknown key', 'bad signature', 'binding mismatch', 'no organization'.
-- Reveals nothing the caller could not learn by trying: only the installed
-- key ids, which are not secret.
CREATE OR REPLACE FUNCTION tenant.context_status()
RETURNS text
LANGUAGE plpgsql
STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  org_text text := current_setting('app.current_organization_id', true);
  usr_text text := current_setting('app.current_user_id', true);
  proof    text := current_setting('app.context_proof', true);
  f        text[];
  k        record;
BEGIN
  IF (SELECT s.verification FROM tenant.context_settings AS s) IS FALSE THEN
    RETURN 'verification off';
  END IF;
  IF coalesce(proof, '') = '' THEN
    RETURN 'no proof';
  END IF;
  f := string_to_array(proof, ',');
  IF cardinality(f) IS DISTINCT FROM 6 OR f[1] <> 'v1'
     OR f[3] !~ '^[0-9]{1,12}$' OR f[6] !~ '^[0-9a-f]{64}$' THEN
    RETURN 'malformed proof';
  END IF;
  IF f[3]::bigint <= extract(epoch FROM statement_timestamp()) THEN
    RETURN 'expired';
  END IF;
  SELECT c.inner_pad, c.outer_pad INTO k FROM tenant.context_keys AS c WHERE c.key_id = f[2];
  IF NOT FOUND THEN
    RETURN 'unknown key';
  END IF;
  IF sha256(decode(f[6], 'hex')) <> sha256(sha256(k.outer_pad || sha256(k.inner_pad || convert_to(
       concat_ws(E'\n', 'pgtp-context-v1', f[2], f[3], f[4], f[5], org_text, coalesce(usr_text, '')),
       'UTF8')))) THEN
    RETURN 'bad signature';
  END IF;
  IF inet_client_port() IS NULL THEN
    IF f[4] <> 'unix' OR f[5] <> '' THEN
      RETURN 'binding mismatch';
    END IF;
  ELSIF f[4] = 'unix' OR f[5] <> inet_client_port()::text OR f[4]::inet <> inet_client_addr() THEN
    RETURN 'binding mismatch';
  END IF;
  IF tenant.uuid_or_null(org_text) IS NULL THEN
    RETURN 'no organization';
  END IF;
  RETURN 'verified';
END
$fn$;

-- tenant.add_context_key(id, key): installs a key (the same text the proxy
-- reads from --context-key-file, without the trailing newline). At least 32
-- bytes; ids are 1-64 of A-Z a-z 0-9 _ -. Adding an id again with the same
-- key changes nothing; with another key it is refused (remove it first).
-- Returns the key's fingerprint. Superuser or tenant_owner only.
CREATE OR REPLACE FUNCTION tenant.add_context_key(key_id text, key text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  raw   bytea;
  k     bytea;
  fp    text;
  inner_p bytea;
  outer_p bytea;
  old   record;
BEGIN
  IF key_id IS NULL OR key_id !~ '^[A-Za-z0-9_-]{1,64}$' THEN
    RAISE EXCEPTION 'tenant.add_context_key: key id must be 1 to 64 of A-Z, a-z, 0-9, _ and -'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF key IS NULL OR octet_length(key) < 32 THEN
    RAISE EXCEPTION 'tenant.add_context_key: the key must be at least 32 bytes'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  raw := convert_to(key, 'UTF8');
  k := CASE WHEN length(raw) > 64 THEN sha256(raw) ELSE raw END;
  inner_p := tenant.hmac_pad(k, 54);
  outer_p := tenant.hmac_pad(k, 92);
  fp := encode(substr(tenant.hmac_sha256(raw, convert_to('pg-tenant-proxy context key fingerprint', 'UTF8')), 1, 8), 'hex');
  SELECT c.inner_pad, c.outer_pad INTO old FROM tenant.context_keys AS c WHERE c.key_id = add_context_key.key_id;
  IF FOUND THEN
    IF old.inner_pad = inner_p AND old.outer_pad = outer_p THEN
      RETURN fp;
    END IF;
    RAISE EXCEPTION 'tenant.add_context_key: key id % is installed with another key', key_id
      USING ERRCODE = 'unique_violation',
            HINT = 'Use a new id for a new key; retire the old one with tenant.remove_context_key().';
  END IF;
  INSERT INTO tenant.context_keys (key_id, inner_pad, outer_pad, fingerprint)
  VALUES (add_context_key.key_id, inner_p, outer_p, fp);
  RETURN fp;
END
$fn$;

-- tenant.remove_context_key(id): retires a key. Sessions whose proof names it
-- see no rows from their next statement on. Superuser or tenant_owner only.
CREATE OR REPLACE FUNCTION tenant.remove_context_key(key_id text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
  DELETE FROM tenant.context_keys AS c WHERE c.key_id = remove_context_key.key_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'tenant.remove_context_key: no key with id %', key_id
      USING ERRCODE = 'no_data_found';
  END IF;
END
$fn$;

-- tenant.set_context_verification(on): switches verification off (false) or
-- back on (true). Off makes the policies trust any app.* setting, as before
-- this file existed: use it only with a proxy started with
-- --context-verification off, and expect tenant.audit() to report it.
CREATE OR REPLACE FUNCTION tenant.set_context_verification(verify boolean)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $fn$
  INSERT INTO tenant.context_settings AS s (singleton, verification) VALUES (true, verify)
  ON CONFLICT (singleton) DO UPDATE SET verification = EXCLUDED.verification
$fn$;

-- tenant.context_key_list: ids, fingerprints and dates of the installed keys
-- (no key material), for DBAs.
CREATE OR REPLACE VIEW tenant.context_key_list AS
  SELECT key_id, fingerprint, added_at FROM tenant.context_keys;
ALTER VIEW tenant.context_key_list OWNER TO tenant_owner;
REVOKE ALL ON tenant.context_key_list FROM PUBLIC;

ALTER FUNCTION tenant.hmac_pad(bytea, integer)        OWNER TO tenant_owner;
ALTER FUNCTION tenant.hmac_sha256(bytea, bytea)       OWNER TO tenant_owner;
ALTER FUNCTION tenant.verified_context()              OWNER TO tenant_owner;
ALTER FUNCTION tenant.context_status()                OWNER TO tenant_owner;
ALTER FUNCTION tenant.add_context_key(text, text)     OWNER TO tenant_owner;
ALTER FUNCTION tenant.remove_context_key(text)        OWNER TO tenant_owner;
ALTER FUNCTION tenant.set_context_verification(boolean) OWNER TO tenant_owner;

-- Tenant sessions need verified_context() (the helpers call it as the
-- invoking role) and may ask context_status(). Everything else is for DBAs.
REVOKE ALL ON FUNCTION tenant.hmac_pad(bytea, integer), tenant.hmac_sha256(bytea, bytea),
                       tenant.verified_context(), tenant.context_status(),
                       tenant.add_context_key(text, text), tenant.remove_context_key(text),
                       tenant.set_context_verification(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant.verified_context(), tenant.context_status() TO tenant_app;

COMMIT;
