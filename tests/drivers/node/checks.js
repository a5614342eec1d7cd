// Shared assertions of the Node.js driver programs (pg_test.js, postgresjs_test.js).
'use strict';
const assert = require('node:assert');

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
const HOST = env('PGTP_HOST');
const PORT = Number(env('PGTP_PORT'));
const DB = env('PGTP_DB');
const TOKEN = { A: env('TOKEN_A'), B: env('TOKEN_B') };
const ORG = { A: env('ORG_A'), B: env('ORG_B') };
const USER = { A: env('USER_A'), B: env('USER_B') };
// Exactly the demo seed's agent_instances per tenant (sql/demo/seed.sql).
const ROWS = {
  A: [['agent-a-only', ORG.A], ['agent-shared', ORG.A]],
  B: [['agent-b-only', ORG.B], ['agent-shared', ORG.B]],
};
const ROWS_SQL = 'SELECT agent_id, organization_id::text AS org FROM agent_instances ORDER BY agent_id';
const PIN_SQL = "SELECT current_setting('app.current_organization_id') AS org, current_setting('app.current_user_id') AS usr";

let failures = 0;
function expect(what, expected, got) {
  try {
    assert.deepStrictEqual(got, expected);
    console.log(`ok: ${what}`);
  } catch (_) {
    failures += 1;
    console.log(`FAIL: ${what}\n  expected: ${JSON.stringify(expected)}\n  got:      ${JSON.stringify(got)}`);
  }
}
// Runs fn, which must reject with this SQLSTATE.
async function expectError(what, code, fn) {
  try {
    await fn();
    expect(what, code, 'no error');
  } catch (e) {
    expect(what, code, e && e.code);
  }
}
const pin = (t) => [ORG[t], USER[t]];
const pinOf = (rows) => [rows[0].org, rows[0].usr];
const rowsOf = (rows) => rows.map((r) => [r.agent_id, r.org]);

async function main(fn) {
  try {
    await fn();
  } catch (e) {
    failures += 1;
    console.log(`FAIL: unexpected error: ${e && e.stack ? e.stack : e} (code ${e && e.code})`);
  }
  console.log(failures ? `${failures} assertion(s) failed` : 'all assertions passed');
  process.exit(failures ? 1 : 0);
}

module.exports = { HOST, PORT, DB, TOKEN, ORG, USER, ROWS, ROWS_SQL, PIN_SQL, expect, expectError, pin, pinOf, rowsOf, main };
