//! Soundness of the guard at a real server: statements made by mutating the
//! attack and must-pass corpora (splicing, comment and whitespace insertion
//! including CR, VT, FF, `--` and `/* */`, case changes, quoting changes) go
//! through the proxy to PostgreSQL 15, in the simple and the extended
//! protocol. After every one the proxy let through, the pinned settings,
//! `current_user` and the visible rows (none of tenant B's, tenant A's own
//! unchanged) must be as they were; every one the guard refuses must come
//! back as the proxy's error with exactly the SQLSTATE the guard decides.
//!
//! Deterministic: `PGTP_SOUNDNESS_SEED` (default below) and
//! `PGTP_SOUNDNESS_N` mutated statements (default 5,000, each sent in both
//! protocols) for a longer run. The issue-11 reproduction is always sent
//! first, unless `PGTP_SOUNDNESS_NO_REPRO` is set. Figures are printed
//! (`--nocapture`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod guard_corpus;

use bytes::BufMut;
use common::wire::*;
use common::*;
use pg_tenant_proxy::guard::{Guard, GuardConfig, TenantScope, Verdict};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROXY_PREFIX: &str = "pg-tenant-proxy";
const DEFAULT_N: usize = 5_000;
const DEFAULT_SEED: u64 = 0x5eed_0011_f00d_cafe;

/// splitmix64: a small deterministic generator (no dependency, same stream
/// on every machine).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

const WHITESPACE: &[&str] = &[" ", "\t", "\n", "\r", "\x0c", "\x0b", "\r\n", "\n\r", " \r "];
const COMMENTS: &[&str] = &[
    "-- x\r",
    "-- x\n",
    "--\r",
    "-- '\r",
    "/* c */",
    "/* /* n */ */",
    "--\r/*\n",
    "/**/",
    "/* -- */",
    "\x0b--\r",
    "-- x\r\n",
    "/*/ */",
];
/// Prefixes that hid a statement from the old screen, or try to.
const PREFIXES: &[&str] = &[
    "-- x\r/*\nSELECT */ ",
    "--\r/* \n select */ ",
    "-- x\r/*\nSELECT */",
    "/* SELECT */ ",
    "SELECT 1;\r",
    "-- c\r\n",
    "(",
    "--\x0c/*\nselect */ ",
    "-- x\x0b/*\nSELECT */ ",
    "/*\rSELECT */ ",
];

fn boundaries(s: &str) -> Vec<usize> {
    s.char_indices().map(|(i, _)| i).chain([s.len()]).collect()
}

fn insert_at(s: &str, at: usize, piece: &str) -> String {
    format!("{}{piece}{}", &s[..at], &s[at..])
}

/// One mutation of `s`; `other` is a second corpus statement for splicing.
fn mutate(rng: &mut Rng, s: &str, other: &str) -> String {
    match rng.below(9) {
        0 => {
            let at = rng.pick(&boundaries(s));
            insert_at(s, at, rng.pick(COMMENTS))
        }
        1 => {
            let spaces: Vec<usize> = s.match_indices(' ').map(|(i, _)| i).collect();
            if spaces.is_empty() {
                return format!("{}{s}", rng.pick(WHITESPACE));
            }
            let at = rng.pick(&spaces);
            format!("{}{}{}", &s[..at], rng.pick(WHITESPACE), &s[at + 1..])
        }
        2 => {
            let mode = rng.below(3);
            s.chars()
                .map(|c| match mode {
                    0 => c.to_ascii_uppercase(),
                    1 => c.to_ascii_lowercase(),
                    _ if rng.below(2) == 0 => c.to_ascii_uppercase(),
                    _ => c.to_ascii_lowercase(),
                })
                .collect()
        }
        3 => requote_string(rng, s),
        4 => quote_identifier(rng, s),
        5 => {
            let (a, b) = (rng.pick(&boundaries(s)), rng.pick(&boundaries(other)));
            format!("{}{}", &s[..a], &other[b..])
        }
        6 => match rng.below(3) {
            0 => format!("{s}; {other}"),
            1 => format!("{other};{}{s}", rng.pick(WHITESPACE)),
            _ => format!("{s}{}{other}", rng.pick(COMMENTS)),
        },
        7 => format!("{}{s}", rng.pick(PREFIXES)),
        _ => {
            let at = rng.pick(&boundaries(s));
            insert_at(s, at, rng.pick(WHITESPACE))
        }
    }
}

/// A `'...'` literal re-spelt: E'', U&'', dollar quoting, or split into a
/// continuation across LF, CR or a `--` comment ended by CR.
fn requote_string(rng: &mut Rng, s: &str) -> String {
    let quotes: Vec<usize> = s.match_indices('\'').map(|(i, _)| i).collect();
    if quotes.len() < 2 {
        return s.to_owned();
    }
    let k = rng.below(quotes.len() - 1);
    let (open, close) = (quotes[k], quotes[k + 1]);
    let body = &s[open + 1..close];
    let cut = rng.pick(&boundaries(body));
    let spelt = match rng.below(7) {
        0 => format!("E'{body}'"),
        1 => format!("U&'{body}'"),
        2 if !body.contains('$') => format!("$${body}$$"),
        3 => format!("$q${body}$q$"),
        4 => format!("'{}'\n'{}'", &body[..cut], &body[cut..]),
        5 => format!("'{}'\r'{}'", &body[..cut], &body[cut..]),
        _ => format!("'{}' -- c\r'{}'", &body[..cut], &body[cut..]),
    };
    format!("{}{spelt}{}", &s[..open], &s[close + 1..])
}

/// A lower-case word put in double quotes (`set_config` -> `"set_config"`).
fn quote_identifier(rng: &mut Rng, s: &str) -> String {
    let b = s.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_lowercase() || b[i] == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_lowercase() || b[i].is_ascii_digit() || b[i] == b'_') {
                i += 1;
            }
            words.push((start, i));
        } else {
            i += 1;
        }
    }
    if words.is_empty() {
        return s.to_owned();
    }
    let (a, z) = rng.pick(&words);
    format!("{}\"{}\"{}", &s[..a], &s[a..z], &s[z..])
}

/// The statements of one run: the issue's reproduction first, then `n`
/// mutations (one or two each) of corpus statements.
fn statements(seed: u64, n: usize) -> Vec<String> {
    let base: Vec<String> = guard_corpus::attacks()
        .into_iter()
        .chain(guard_corpus::must_pass())
        .filter_map(|c| c.sql_str().map(str::to_owned))
        .filter(|s| !s.contains('\0'))
        .collect();
    assert!(base.len() > 250, "corpora have {} statements", base.len());
    let mut rng = Rng(seed);
    let mut out = vec![format!(
        "-- x\r/*\nSELECT */ SET app.current_organization_id = '{ORG_B}'"
    )];
    while out.len() <= n {
        let mut s = base[rng.below(base.len())].clone();
        for _ in 0..=rng.below(2) {
            let other = base[rng.below(base.len())].clone();
            s = mutate(&mut rng, &s, &other);
        }
        out.push(s);
    }
    out
}

/// A fresh session as tenant A, or `None` if the proxy cannot open one (a
/// statement that got through changed the login role's password, say).
async fn reconnect(p: &Proxy) -> Option<TcpStream> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(authenticated_socket(p))
        .catch_unwind()
        .await
        .ok()
}

/// One message read with a deadline; `None` when the connection ended.
async fn read_one(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let read = async {
        let tag = s.read_u8().await.ok()?;
        let len = s.read_i32().await.ok()?;
        let mut body = vec![0; usize::try_from(len).ok()?.checked_sub(4)?];
        s.read_exact(&mut body).await.ok()?;
        Some((tag, body))
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("no answer within 20 s")
}

/// Reads up to ReadyForQuery, failing any COPY FROM STDIN the statement
/// started (in the extended protocol the server then waits for a new Sync).
async fn until_ready(s: &mut TcpStream, extended: bool) -> Option<Vec<(u8, Vec<u8>)>> {
    let mut out = Vec::new();
    loop {
        let m = read_one(s).await?;
        let tag = m.0;
        out.push(m);
        match tag {
            b'Z' => return Some(out),
            b'G' => {
                let mut fail = msg(b'f', |b| {
                    b.put_slice(b"soundness test");
                    b.put_u8(0);
                });
                if extended {
                    fail.extend_from_slice(&msg(b'S', |_| {}));
                }
                s.write_all(&fail).await.ok()?;
            }
            _ => {}
        }
    }
}

fn field(body: &[u8], code: u8) -> String {
    body.split(|c| *c == 0)
        .find(|f| f.first() == Some(&code))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .unwrap_or_default()
}

fn extended_msgs(sql: &str) -> bytes::BytesMut {
    let mut out = msg(b'P', |b| {
        b.put_u8(0);
        b.put_slice(sql.as_bytes());
        b.put_u8(0);
        b.put_i16(0);
    });
    out.extend_from_slice(&msg(b'B', |b| {
        b.put_u8(0);
        b.put_u8(0);
        b.put_i16(0);
        b.put_i16(0);
        b.put_i16(0);
    }));
    out.extend_from_slice(&msg(b'E', |b| {
        b.put_u8(0);
        b.put_i32(0);
    }));
    out.extend_from_slice(&msg(b'S', |_| {}));
    out
}

/// The session's state as tenant A must always see it.
fn expected_state() -> Vec<String> {
    vec![
        ORG_A.to_owned(),
        USER_A.to_owned(),
        "proxy_login".to_owned(),
        "0".to_owned(),
        "a-agent-1,a-agent-2".to_owned(),
    ]
}

const STATE_SQL: &str = "SELECT pg_catalog.current_setting('app.current_organization_id'), \
    pg_catalog.current_setting('app.current_user_id'), current_user::text, \
    ((SELECT count(*) FROM public.agent_instances WHERE organization_id <> 'aaaaaaaa-0000-4000-8000-000000000001') \
     + (SELECT count(*) FROM public.organizations WHERE id <> 'aaaaaaaa-0000-4000-8000-000000000001'))::text, \
    (SELECT string_agg(agent_id, ',' ORDER BY agent_id) FROM public.agent_instances)";

/// The state row, or the SQLSTATE that stopped the query.
async fn state(s: &mut TcpStream) -> Option<Result<Vec<String>, String>> {
    s.write_all(&query_msg(STATE_SQL.as_bytes())).await.ok()?;
    let msgs = until_ready(s, false).await?;
    if let Some(e) = msgs.iter().find(|m| m.0 == b'E') {
        return Some(Err(format!("{} {}", field(&e.1, b'C'), field(&e.1, b'M'))));
    }
    let row = msgs.iter().find(|m| m.0 == b'D')?;
    let body = &row.1;
    let n = i16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2;
    let mut cols = Vec::with_capacity(n);
    for _ in 0..n {
        let len = i32::from_be_bytes(body[at..at + 4].try_into().unwrap());
        at += 4;
        if len < 0 {
            cols.push("NULL".to_owned());
        } else {
            let len = len as usize;
            cols.push(String::from_utf8_lossy(&body[at..at + len]).into_owned());
            at += len;
        }
    }
    Some(Ok(cols))
}

#[derive(Default, Debug)]
struct Figures {
    sent: usize,
    refused: usize,
    passed_ok: usize,
    passed_server_error: usize,
    rewritten: usize,
    reconnects: usize,
    by_code: std::collections::BTreeMap<String, usize>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_corpus_statements_never_move_the_tenant() {
    let n = std::env::var("PGTP_SOUNDNESS_N")
        .ok()
        .map(|v| v.parse::<usize>().expect("PGTP_SOUNDNESS_N"))
        .unwrap_or(DEFAULT_N);
    let seed = std::env::var("PGTP_SOUNDNESS_SEED")
        .ok()
        .map(|v| v.parse::<u64>().expect("PGTP_SOUNDNESS_SEED"))
        .unwrap_or(DEFAULT_SEED);
    let p = Proxy::start(&[]).await;
    // The proxy runs the default policy; the same guard here says what it
    // must answer for each statement.
    let guard = Guard::new(&GuardConfig::default()).unwrap();
    let scope = TenantScope::new(ORG_A.parse().unwrap());
    let started = Instant::now();
    let mut figures = Figures::default();
    let mut failures: Vec<String> = Vec::new();
    let mut s = authenticated_socket(&p).await;
    assert_eq!(state(&mut s).await.unwrap().unwrap(), expected_state());
    let mut all = statements(seed, n);
    if std::env::var_os("PGTP_SOUNDNESS_NO_REPRO").is_some() {
        // Mutations only (to see whether they alone find a bypass).
        all.remove(0);
    }
    'run: for (i, sql) in all.iter().enumerate() {
        for extended in [false, true] {
            let expect = if extended {
                guard.check_parse(sql.as_bytes(), &scope)
            } else {
                guard.check_query(sql.as_bytes(), &scope)
            };
            figures.sent += 1;
            let request = if extended {
                extended_msgs(sql)
            } else {
                query_msg(sql.as_bytes())
            };
            let answer = match s.write_all(&request).await {
                Ok(()) => until_ready(&mut s, extended).await,
                Err(_) => None,
            };
            let proto = if extended { "extended" } else { "simple" };
            let Some(msgs) = answer else {
                // The server or proxy ended the session (a FATAL): a fresh
                // one starts from the pinned state, checked below.
                figures.reconnects += 1;
                if matches!(expect, Verdict::Deny(_)) {
                    failures.push(format!("#{i} {proto}: a refused statement ended the session: {sql:?}"));
                }
                match reconnect(&p).await {
                    Some(fresh) => s = fresh,
                    None => {
                        failures.push(format!("#{i} {proto}: no new session after {sql:?}"));
                        break 'run;
                    }
                }
                continue;
            };
            let error = msgs.iter().find(|m| m.0 == b'E');
            match (&expect, error) {
                (Verdict::Deny(e), Some(err)) => {
                    let (code, message) = (field(&err.1, b'C'), field(&err.1, b'M'));
                    if code != e.code.code() || !message.starts_with(PROXY_PREFIX) {
                        failures.push(format!(
                            "#{i} {proto}: want the proxy's {}, got {code} {message}: {sql:?}",
                            e.code.code()
                        ));
                    }
                    figures.refused += 1;
                    *figures.by_code.entry(code).or_default() += 1;
                }
                (Verdict::Deny(e), None) => {
                    failures.push(format!("#{i} {proto}: the guard refuses ({e:?}) but it ran: {sql:?}"))
                }
                (_, Some(err)) => {
                    let message = field(&err.1, b'M');
                    if message.starts_with(PROXY_PREFIX) {
                        failures.push(format!(
                            "#{i} {proto}: the guard allows it but the proxy refused: {message}: {sql:?}"
                        ));
                    }
                    figures.passed_server_error += 1;
                }
                (_, None) => figures.passed_ok += 1,
            }
            if matches!(expect, Verdict::Rewrite(_)) {
                figures.rewritten += 1;
            }
            // The state, inside whatever transaction the statement left open
            // (a SET inside it shows before any ROLLBACK could undo it).
            let mut seen = state(&mut s).await;
            if !matches!(seen, Some(Ok(_))) {
                // Aborted transaction, or a timeout the statement set: end the
                // transaction (that undoes only what was never visible) and
                // lift the timeouts, then look again.
                let fix = b"ROLLBACK; SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0";
                if s.write_all(&query_msg(fix)).await.is_ok() {
                    until_ready(&mut s, false).await;
                }
                seen = state(&mut s).await;
            }
            match seen {
                Some(Ok(row)) if row == expected_state() => {}
                Some(Ok(row)) => {
                    failures.push(format!(
                        "#{i} {proto}: the session's tenant, role or rows became {row:?} after {sql:?} (guard: {expect:?})"
                    ));
                    // Go on from a fresh session, pinned again.
                    figures.reconnects += 1;
                    match reconnect(&p).await {
                        Some(fresh) => s = fresh,
                        None => {
                            failures.push(format!("#{i} {proto}: no new session after {sql:?}"));
                            break 'run;
                        }
                    }
                    continue;
                }
                Some(Err(e)) => failures.push(format!("#{i} {proto}: state unreadable after {sql:?}: {e}")),
                None => {
                    figures.reconnects += 1;
                    match reconnect(&p).await {
                        Some(fresh) => s = fresh,
                        None => {
                            failures.push(format!("#{i} {proto}: no new session after {sql:?}"));
                            break 'run;
                        }
                    }
                    continue;
                }
            }
            // Leave no transaction open for the next statement.
            let ended = match s.write_all(&query_msg(b"ROLLBACK")).await {
                Ok(()) => until_ready(&mut s, false).await.is_none(),
                Err(_) => true,
            };
            if ended {
                figures.reconnects += 1;
                match reconnect(&p).await {
                    Some(fresh) => s = fresh,
                    None => {
                        failures.push(format!("#{i} {proto}: no new session after {sql:?}"));
                        break 'run;
                    }
                }
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "soundness: seed {seed:#x}, {} statements in {:.1} s: {} refused {:?}, {} ran, {} server errors, {} rewritten, {} reconnects",
        figures.sent,
        elapsed.as_secs_f64(),
        figures.refused,
        figures.by_code,
        figures.passed_ok,
        figures.passed_server_error,
        figures.rewritten,
        figures.reconnects
    );
    assert!(
        failures.is_empty(),
        "{} of {} statements broke the guard's promise; the first ones:\n{}",
        failures.len(),
        figures.sent,
        failures.iter().take(15).cloned().collect::<Vec<_>>().join("\n")
    );
    // Not vacuous: both outcomes occur in quantity.
    assert!(figures.refused * 5 >= figures.sent, "{figures:?}");
    assert!(figures.passed_ok * 10 >= figures.sent, "{figures:?}");
}
