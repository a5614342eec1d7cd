// postgres.js (`postgres`) through the proxy: its built-in pool, reserved
// connections, transactions, and sql.listen()/sql.notify() (pg_notify with the
// channel as a bind parameter, scoped to the tenant by the proxy).
// Run by tests/drivers/run.sh.
'use strict';
const postgres = require('postgres');
const { HOST, PORT, DB, TOKEN, ORG, ROWS, ROWS_SQL, PIN_SQL, expect, expectError, pin, pinOf, rowsOf, main } = require('./checks');

const connect = (t, password, extra = {}) => postgres({
  host: HOST, port: PORT, database: DB, username: 'app', password: password || TOKEN[t],
  ssl: false, max: 2, onnotice: () => {}, connect_timeout: 10, ...extra,
});
const waitFor = async (what, cond) => {
  for (let i = 0; i < 100 && !cond(); i++) await new Promise((r) => setTimeout(r, 50));
  if (!cond()) console.log(`(timed out after 5 s waiting for ${what})`);
};

main(async () => {
  console.log(`postgres.js ${JSON.parse(require('node:fs').readFileSync(require('node:path').join(__dirname, 'node_modules/postgres/package.json'))).version}`);
  const sql = { A: connect('A'), B: connect('B') };
  for (const t of ['A', 'B']) {
    const other = t === 'A' ? 'B' : 'A';
    const s = sql[t];
    expect(`tenant ${t}: exactly its rows`, ROWS[t], rowsOf(await s.unsafe(ROWS_SQL)));
    // Tagged templates are named prepared statements with bound parameters.
    expect(`tenant ${t}: none of ${other}'s rows by parameter`, [{ n: 0 }],
      Array.from(await s`SELECT count(*)::int AS n FROM agent_instances WHERE organization_id = ${ORG[other]}`));
    const results = await Promise.all(Array.from({ length: 6 }, () => s`SELECT agent_id, organization_id::text AS org FROM agent_instances ORDER BY agent_id`));
    expect(`tenant ${t}: 6 concurrent queries over the pool, each exactly its rows`, Array(6).fill(ROWS[t]), results.map(rowsOf));

    // One connection held across statements (sql.reserve()).
    const r = await s.reserve();
    expect(`tenant ${t}: pinned`, pin(t), pinOf(await r.unsafe(PIN_SQL)));
    await r.unsafe('RESET ALL');
    expect(`tenant ${t}: pinned after RESET ALL`, pin(t), pinOf(await r.unsafe(PIN_SQL)));
    await r.unsafe('DISCARD ALL');
    expect(`tenant ${t}: pinned after DISCARD ALL`, pin(t), pinOf(await r.unsafe(PIN_SQL + ' -- after discard')));
    await expectError(`tenant ${t}: SET of the pin refused`, '42501',
      () => r.unsafe(`SET app.current_organization_id = '${ORG[other]}'`));
    expect(`tenant ${t}: pinned after the refused SET`, pin(t), pinOf(await r.unsafe(PIN_SQL)));
    r.release();

    // The pool's reset path for a failed transaction: sql.begin() rolls back
    // (with it a session SET made inside) and the connection goes back to the
    // pool usable and pinned. A one-connection pool, so the next query reuses it.
    const one = connect(t, null, { max: 1 });
    await expectError(`tenant ${t}: set_config of the pin refused inside sql.begin()`, '42501',
      () => one.begin(async (tx) => {
        await tx`SET application_name = 'dirty'`;
        await tx`SELECT set_config('app.current_organization_id', ${ORG[other]}, false)`;
      }));
    expect(`tenant ${t}: pooled connection pinned after the rollback`, pin(t), pinOf(await one.unsafe(PIN_SQL)));
    expect(`tenant ${t}: the SET inside the failed transaction was rolled back`, false,
      (await one`SHOW application_name`)[0].application_name === 'dirty');
    expect(`tenant ${t}: exactly its rows after the rollback`, ROWS[t], rowsOf(await one.unsafe(ROWS_SQL)));
    await one.end({ timeout: 5 });
  }

  if (process.env.PGTP_POOL_MODE === 'transaction') {
    // Transaction pool mode: a LISTEN would stay on a shared connection, so
    // it is refused; notifications can still be sent.
    await expectError('LISTEN refused in transaction pool mode', '0A000', async () => {
      await sql.A.listen('jobs', () => {});
    });
    await sql.A.notify('jobs', 'from-a');
  } else {
    // LISTEN/NOTIFY: both tenants listen on the same channel name; each hears only
    // its own organization's notifications. The last notification of each
    // tenant is sent after the other tenant's, so a leak would arrive before it.
    const heard = { A: [], B: [] };
    await sql.A.listen('jobs', (payload) => heard.A.push(payload));
    await sql.B.listen('jobs', (payload) => heard.B.push(payload));
    await sql.A.notify('jobs', 'from-a');
    await sql.B.notify('jobs', 'from-b');
    await sql.A.notify('jobs', 'end-a');
    await sql.B.notify('jobs', 'end-b');
    await waitFor('the end-a and end-b notifications', () => heard.A.includes('end-a') && heard.B.includes('end-b'));
    expect("LISTEN/NOTIFY: tenant A hears exactly its own notifications", ['from-a', 'end-a'], heard.A);
    expect("LISTEN/NOTIFY: tenant B hears exactly its own notifications", ['from-b', 'end-b'], heard.B);
  }

  await expectError('wrong password refused by the proxy', '28P01', async () => {
    const bad = connect('A', 'not-a-token', { max: 1 });
    try { await bad`SELECT 1`; } finally { await bad.end({ timeout: 1 }); }
  });
  await Promise.all([sql.A.end({ timeout: 5 }), sql.B.end({ timeout: 5 })]);
});
