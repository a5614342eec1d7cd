//! Named prepared statements across backends. A client's `s1` is renamed to
//! a proxy-wide name chosen by its text and parameter types (`pgtp_s<N>`),
//! so two clients' `s1` never collide and a statement prepared on a backend
//! serves every client that prepares the same text there. Each backend
//! remembers which proxy-wide statements it holds (see
//! [`super::backend::Prepared`]); one that lacks a statement gets a Parse
//! injected before it is used.
//!
//! Input: the statement text and parameter types of a client's Parse, after
//! the guard allowed (or rewrote) it; keys only, never interpreted here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::{BufMut, Bytes, BytesMut};

/// Entries kept in the registry before dead ones are swept.
const SWEEP_AT: usize = 1024;

/// One proxy-wide statement.
#[derive(Debug)]
pub struct Statement {
    /// Its number.
    pub id: u64,
    /// Its name on every backend (`pgtp_s<id>`).
    pub name: String,
    /// The Parse message that prepares it under [`Statement::name`].
    pub parse: Bytes,
    /// What it does to its transaction.
    pub effect: TxnEffect,
}

/// What a statement does to its transaction, as far as the pooled relay
/// cares (read from its text; see [`super::relay`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxnEffect {
    /// It begins with COMMIT, END, ROLLBACK or ABORT (`ROLLBACK TO
    /// SAVEPOINT` included): the tenant is never pinned right before it.
    pub ends: bool,
    /// ... and it is not `ROLLBACK TO`: the transaction is over after it.
    pub closes: bool,
    /// It may open a transaction block of its own or start a COPY.
    pub may_begin_or_copy: bool,
}

impl TxnEffect {
    /// The effect of one statement's text.
    pub fn of(sql: &[u8]) -> TxnEffect {
        TxnEffect {
            ends: crate::guard::ends_transaction(sql),
            closes: crate::guard::closes_transaction(sql),
            may_begin_or_copy: crate::guard::may_begin_or_copy(sql),
        }
    }

    /// What is assumed of a portal the proxy does not know.
    pub const UNKNOWN: TxnEffect = TxnEffect {
        ends: false,
        closes: false,
        may_begin_or_copy: true,
    };
}

/// The statements prepared by any client, by text and parameter types.
/// Each client holds its own statements; an entry lives while some client
/// holds it.
#[derive(Debug, Default)]
pub struct Registry {
    map: Mutex<HashMap<Bytes, Weak<Statement>>>,
    next: AtomicU64,
    sweep_at: AtomicU64,
}

impl Registry {
    /// The proxy-wide statement for `sql` with the Parse tail `types`
    /// (parameter count and type OIDs, as the client sent them).
    pub fn intern(&self, sql: &[u8], types: &[u8]) -> Arc<Statement> {
        let mut key = BytesMut::with_capacity(sql.len() + 1 + types.len());
        key.put_slice(sql);
        key.put_u8(0);
        key.put_slice(types);
        let key = key.freeze();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(&key).and_then(Weak::upgrade) {
            return s;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("pgtp_s{id}");
        let mut parse = BytesMut::with_capacity(name.len() + key.len() + 6);
        crate::protocol::frame::write_message(&mut parse, b'P', |b| {
            b.put_slice(name.as_bytes());
            b.put_u8(0);
            b.put_slice(&key);
        });
        let stmt = Arc::new(Statement {
            id,
            name,
            parse: parse.freeze(),
            effect: TxnEffect::of(sql),
        });
        map.insert(key, Arc::downgrade(&stmt));
        let limit = self.sweep_at.load(Ordering::Relaxed).max(SWEEP_AT as u64);
        if map.len() as u64 > limit {
            map.retain(|_, w| w.strong_count() > 0);
            self.sweep_at
                .store((map.len() as u64).saturating_mul(2), Ordering::Relaxed);
        }
        stmt
    }

    /// Entries in the registry (live or not yet swept).
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether the registry is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_and_types_share_a_name_others_do_not() {
        let r = Registry::default();
        let a = r.intern(b"SELECT $1", &[0, 1, 0, 0, 0, 23]);
        let b = r.intern(b"SELECT $1", &[0, 1, 0, 0, 0, 23]);
        let c = r.intern(b"SELECT $1", &[0, 1, 0, 0, 0, 25]);
        let d = r.intern(b"SELECT $1 ", &[0, 1, 0, 0, 0, 23]);
        assert_eq!(a.name, b.name);
        assert_ne!(a.name, c.name);
        assert_ne!(a.name, d.name);
        assert!(a.parse.starts_with(b"P"));
        assert!(!a.effect.ends);
        assert!(r.intern(b"  commit", &[0, 0]).effect.ends);
    }

    #[test]
    fn transaction_effects_of_statement_texts() {
        let e = TxnEffect::of;
        assert_eq!(
            e(b"COMMIT"),
            TxnEffect {
                ends: true,
                closes: true,
                may_begin_or_copy: false
            }
        );
        assert!(e(b"rollback").closes);
        assert!(e(b"ABORT").closes);
        assert!(e(b"end transaction").closes);
        for rollback_to in [
            &b"ROLLBACK TO SAVEPOINT a"[..],
            b"rollback to a",
            b"ROLLBACK WORK TO SAVEPOINT a",
            b"ROLLBACK\tTRANSACTION\nTO a",
            b"ROLLBACK/**/TO SAVEPOINT a",
            b"rollback -- comment\r to a",
            b"ROLLBACK\x0cTO a",
        ] {
            let x = e(rollback_to);
            assert!(x.ends && !x.closes, "{:?}", String::from_utf8_lossy(rollback_to));
        }
        // A comment holding the word `to` is not ROLLBACK TO.
        assert!(e(b"rollback -- to\n").closes);
        assert!(e(b"ROLLBACK /* to a */").closes);
        assert!(!e(b"SELECT 1").ends);
        for opens in [
            &b"BEGIN"[..],
            b"begin isolation level serializable",
            b"START TRANSACTION",
            b"copy t from stdin",
            b"COPY t TO STDOUT",
            b"select start_date from t",
        ] {
            assert!(e(opens).may_begin_or_copy, "{:?}", String::from_utf8_lossy(opens));
        }
        for plain in [
            &b"SELECT 1"[..],
            b"INSERT INTO t VALUES ($1)",
            b"COMMIT",
            b"beg",
            b"sta",
        ] {
            assert!(!e(plain).may_begin_or_copy, "{:?}", String::from_utf8_lossy(plain));
        }
    }

    #[test]
    fn dead_entries_are_swept() {
        let r = Registry::default();
        for i in 0..(SWEEP_AT * 3) {
            drop(r.intern(format!("SELECT {i}").as_bytes(), &[0, 0]));
        }
        assert!(r.len() <= SWEEP_AT + 1, "{}", r.len());
    }
}
