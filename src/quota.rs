//! Per-organization session counts, so that one tenant cannot take every
//! upstream connection and starve the others.
//!
//! Input: the organization of a verified token. A session holds an
//! [`OrgPermit`] from login to its end; dropping it gives the slot back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::error::{ClientError, SqlState};

/// Open sessions per organization, against one limit for all.
#[derive(Debug)]
pub struct OrgSessions {
    /// Most sessions one organization may hold; 0 means no limit. Changed
    /// by a reload; sessions already open keep their slots.
    limit: AtomicUsize,
    open: Mutex<HashMap<Uuid, usize>>,
}

/// One session's slot; released on drop.
#[derive(Debug)]
pub struct OrgPermit {
    sessions: Arc<OrgSessions>,
    org: Uuid,
}

impl OrgSessions {
    /// A counter with `limit` sessions per organization (0: unlimited).
    pub fn new(limit: usize) -> Arc<OrgSessions> {
        Arc::new(OrgSessions {
            limit: AtomicUsize::new(limit),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a slot for `org`, or the client's FATAL 53300 when its
    /// organization already holds the limit.
    pub fn acquire(self: &Arc<Self>, org: Uuid) -> Result<OrgPermit, ClientError> {
        let limit = self.limit.load(Ordering::Relaxed);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(org).or_insert(0);
        if limit != 0 && *n >= limit {
            return Err(ClientError::fatal(
                SqlState::TooManyConnections,
                format!(
                    "too many sessions for your organization: the proxy allows {} at a time",
                    limit
                ),
            )
            .with_hint("Close idle connections or lower your connection pool size; the limit is limits.max_sessions_per_organization."));
        }
        *n += 1;
        Ok(OrgPermit {
            sessions: self.clone(),
            org,
        })
    }

    /// Sets a new limit for sessions that start from now on.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Sessions `org` holds now.
    pub fn open(&self, org: &Uuid) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(org).copied().unwrap_or(0)
    }
}

impl Drop for OrgPermit {
    fn drop(&mut self) {
        let mut open = self.sessions.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.org) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.org);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn limit_per_organization_and_slots_come_back() {
        let s = OrgSessions::new(2);
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let a1 = s.acquire(a).unwrap();
        let _a2 = s.acquire(a).unwrap();
        let err = s.acquire(a).unwrap_err();
        assert_eq!(err.code, SqlState::TooManyConnections);
        assert!(err.message.contains("allows 2 at a time"), "{}", err.message);
        // Another organization is not affected.
        let _b1 = s.acquire(b).unwrap();
        drop(a1);
        assert_eq!(s.open(&a), 1);
        let _a3 = s.acquire(a).unwrap();
    }

    #[test]
    fn zero_means_unlimited() {
        let s = OrgSessions::new(0);
        let held: Vec<_> = (0..1000).map(|_| s.acquire(Uuid::from_u128(7)).unwrap()).collect();
        assert_eq!(s.open(&Uuid::from_u128(7)), held.len());
        drop(held);
        assert!(s.open.lock().unwrap().is_empty());
    }
}
