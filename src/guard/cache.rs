//! A bounded verdict cache keyed by the exact statement bytes, shared by all
//! sessions (prepared statements and ORM queries repeat byte for byte).
//!
//! Input: untrusted statement text as keys. Only verdicts that do not depend
//! on the tenant are stored (Allow and Deny, never a Rewrite), so one tenant's
//! entry is exactly what any other tenant would have computed. Keys are
//! hashed with a per-process random key (std `RandomState`), so a client
//! cannot aim many keys at one shard; entries, bytes and key size are capped.

use crate::error::ClientError;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, PoisonError, RwLock};

/// Shards: lookups of different statements from 2-8 threads rarely meet.
const SHARDS: usize = 16;

/// Statements longer than this are never cached (bounds memory per entry).
pub(crate) const MAX_CACHED_STATEMENT_BYTES: usize = 8 * 1024;

/// Average key bytes budgeted per entry: total bytes = entries * this.
const BYTES_PER_ENTRY_BUDGET: usize = 2 * 1024;

/// A tenant-independent verdict.
#[derive(Debug, Clone)]
pub(crate) enum Cached {
    /// Allowed; what it does to the session (transaction pool mode only).
    Allow(super::Effects),
    Deny(ClientError),
}

struct Shard {
    map: HashMap<Arc<[u8]>, Cached, RandomState>,
    /// Insertion order, for first-in-first-out eviction.
    order: VecDeque<Arc<[u8]>>,
    bytes: usize,
}

pub(crate) struct VerdictCache {
    shards: Vec<RwLock<Shard>>,
    hasher: RandomState,
    max_entries_per_shard: usize,
    max_bytes_per_shard: usize,
}

impl VerdictCache {
    /// A cache holding about `entries` verdicts; `None` when `entries` is 0.
    pub(crate) fn new(entries: usize) -> Option<VerdictCache> {
        if entries == 0 {
            return None;
        }
        let per_shard = entries.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS)
            .map(|_| {
                RwLock::new(Shard {
                    map: HashMap::with_hasher(RandomState::new()),
                    order: VecDeque::new(),
                    bytes: 0,
                })
            })
            .collect();
        Some(VerdictCache {
            shards,
            hasher: RandomState::new(),
            max_entries_per_shard: per_shard,
            max_bytes_per_shard: per_shard.saturating_mul(BYTES_PER_ENTRY_BUDGET),
        })
    }

    fn shard(&self, key: &[u8]) -> Option<&RwLock<Shard>> {
        let h = self.hasher.hash_one(key);
        // Truncation is intended: any bits pick a shard.
        #[allow(clippy::cast_possible_truncation)]
        let idx = (h as usize) % SHARDS;
        self.shards.get(idx)
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<Cached> {
        if key.len() > MAX_CACHED_STATEMENT_BYTES {
            return None;
        }
        let shard = self.shard(key)?;
        let guard = shard.read().unwrap_or_else(PoisonError::into_inner);
        guard.map.get(key).cloned()
    }

    pub(crate) fn insert(&self, key: &[u8], verdict: Cached) {
        if key.len() > MAX_CACHED_STATEMENT_BYTES {
            return;
        }
        let Some(shard) = self.shard(key) else {
            return;
        };
        let mut s = shard.write().unwrap_or_else(PoisonError::into_inner);
        if s.map.contains_key(key) {
            return;
        }
        while !s.order.is_empty()
            && (s.map.len() >= self.max_entries_per_shard
                || s.bytes.saturating_add(key.len()) > self.max_bytes_per_shard)
        {
            if let Some(old) = s.order.pop_front() {
                s.bytes = s.bytes.saturating_sub(old.len());
                s.map.remove(&old);
            }
        }
        let k: Arc<[u8]> = Arc::from(key);
        s.bytes = s.bytes.saturating_add(k.len());
        s.order.push_back(Arc::clone(&k));
        s.map.insert(k, verdict);
    }

    /// Number of cached verdicts (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_distinct_statements_stay_bounded() {
        let Some(c) = VerdictCache::new(64) else {
            panic!("cache disabled")
        };
        for i in 0..10_000 {
            c.insert(format!("SELECT {i}").as_bytes(), Cached::Allow(Default::default()));
        }
        assert!(c.len() <= 64 + SHARDS);
        assert!(matches!(c.get(b"SELECT 9999"), Some(Cached::Allow(_))));
    }

    #[test]
    fn oversized_statement_not_cached() {
        let Some(c) = VerdictCache::new(64) else {
            panic!("cache disabled")
        };
        let big = vec![b'x'; MAX_CACHED_STATEMENT_BYTES + 1];
        c.insert(&big, Cached::Allow(Default::default()));
        assert!(c.get(&big).is_none());
    }
}
