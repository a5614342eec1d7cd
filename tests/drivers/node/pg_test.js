// node-postgres (`pg`, with pg.Pool) through the proxy. Run by tests/drivers/run.sh.
'use strict';
const pg = require('pg');
const { HOST, PORT, DB, TOKEN, ORG, ROWS, ROWS_SQL, PIN_SQL, expect, expectError, pin, pinOf, rowsOf, main } = require('./checks');

const config = (t, password) => ({ host: HOST, port: PORT, database: DB, user: 'app', ssl: false, password: password || TOKEN[t] });

main(async () => {
  console.log(`pg ${require('pg/package.json').version}`);
  for (const t of ['A', 'B']) {
    const other = t === 'A' ? 'B' : 'A';
    const c = new pg.Client(config(t));
    await c.connect();
    expect(`tenant ${t}: exactly its rows`, ROWS[t], rowsOf((await c.query(ROWS_SQL)).rows));
    // Parameters go through the extended protocol (unnamed statement) ...
    expect(`tenant ${t}: none of ${other}'s rows by parameter`, [{ n: 0 }],
      (await c.query('SELECT count(*)::int AS n FROM agent_instances WHERE organization_id = $1', [ORG[other]])).rows);
    // ... and a named statement is prepared once, then only bound.
    for (let i = 0; i < 2; i++) {
      expect(`tenant ${t}: named prepared statement, run ${i + 1}`, [{ n: 2 }],
        (await c.query({ name: 'own', text: 'SELECT count(*)::int AS n FROM agent_instances WHERE organization_id = $1', values: [ORG[t]] })).rows);
    }
    expect(`tenant ${t}: pinned`, pin(t), pinOf((await c.query(PIN_SQL)).rows));
    await c.query('RESET ALL');
    expect(`tenant ${t}: pinned after RESET ALL`, pin(t), pinOf((await c.query(PIN_SQL)).rows));
    await c.query('DISCARD ALL');
    expect(`tenant ${t}: pinned after DISCARD ALL`, pin(t), pinOf((await c.query(PIN_SQL)).rows));
    await expectError(`tenant ${t}: SET of the pin refused`, '42501',
      () => c.query(`SET app.current_organization_id = '${ORG[other]}'`));
    expect(`tenant ${t}: pinned after the refused SET`, pin(t), pinOf((await c.query(PIN_SQL)).rows));
    await c.end();
  }

  await expectError('wrong password refused by the proxy', '28P01', async () => {
    const c = new pg.Client(config('A', 'not-a-token'));
    await c.connect();
    await c.end();
  });

  // pg.Pool's reset path: pg-pool keeps a released client as it is, and
  // release(err) destroys it so the next borrower gets a fresh login.
  const pool = new pg.Pool({ ...config('A'), max: 2 });
  let c = await pool.connect();
  const pid = c.processID;
  const defaultAppName = (await c.query('SHOW application_name')).rows[0].application_name;
  await c.query("SET application_name = 'dirty'");
  await c.query('BEGIN');
  await expectError('pool: refused SET inside a transaction', '42501',
    () => c.query(`SET app.current_organization_id = '${ORG.B}'`));
  await expectError('pool: the transaction is aborted (25P02) until ROLLBACK', '25P02', () => c.query('SELECT 1'));
  c.release(new Error('dirty'));
  c = await pool.connect();
  expect('pool: release(err) replaced the backend', true, c.processID !== pid);
  expect('pool: fresh client not in a failed transaction', [{ one: 1 }], (await c.query('SELECT 1 AS one')).rows);
  expect('pool: fresh client has the default application_name', defaultAppName,
    (await c.query('SHOW application_name')).rows[0].application_name);
  expect('pool: pinned after the reset', pin('A'), pinOf((await c.query(PIN_SQL)).rows));
  const reusedPid = c.processID;
  c.release();
  c = await pool.connect();
  expect('pool: a clean release is reused', reusedPid, c.processID);
  c.release();
  const results = await Promise.all(Array.from({ length: 6 }, () => pool.query(ROWS_SQL)));
  expect("pool: 6 concurrent pool.query(), each exactly tenant A's rows", Array(6).fill(ROWS.A), results.map((r) => rowsOf(r.rows)));
  await pool.end();
});
