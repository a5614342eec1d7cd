//! Cancel keys. Each client gets a random BackendKeyData from the proxy; a
//! CancelRequest arriving on the listen port is mapped to the upstream key of
//! that session and forwarded. Unknown keys do nothing, silently, like
//! PostgreSQL.
//!
//! Only unknown keys count against the per-peer budget: a request that names
//! a live session is always forwarded, so bogus requests from a shared
//! address (NAT, a proxy pool) can never stop another client's genuine
//! cancel. The budget bounds the work and the log lines a flooding peer
//! causes; guessing a key is out of reach anyway (63 random bits per key).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Cancel requests accepted per peer address per second.
const MAX_CANCELS_PER_PEER_PER_SEC: u32 = 20;
/// Peers tracked by the limiter before old entries are swept.
const MAX_TRACKED_PEERS: usize = 10_000;

/// Proxy-issued keys mapped to upstream keys.
#[derive(Debug, Default)]
pub struct CancelMap {
    keys: Mutex<HashMap<(i32, i32), (i32, i32)>>,
    limiter: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// What [`CancelMap::admit`] decided for one CancelRequest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelDecision {
    /// The key names a live session: forward the cancel to this upstream key.
    Forward((i32, i32)),
    /// Unknown key, within the peer's budget: ignore it.
    Unknown,
    /// Unknown key, over the peer's budget: ignore it. `first` is set for the
    /// first such request of each one-second window, so a flood is logged
    /// once per second, not once per request.
    UnknownOverBudget {
        /// The first request over budget in this window.
        first: bool,
    },
}

/// Removes its key from the map when dropped (the session ended).
#[derive(Debug)]
pub struct Registration {
    map: Arc<CancelMap>,
    key: (i32, i32),
}

impl Registration {
    /// The key handed to the client as BackendKeyData.
    pub fn key(&self) -> (i32, i32) {
        self.key
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.keys.lock() {
            m.remove(&self.key);
        }
    }
}

impl CancelMap {
    /// Issues a fresh random proxy key for a session whose upstream key is `upstream`.
    pub fn register(self: &Arc<Self>, upstream: (i32, i32)) -> Registration {
        let mut m = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let key = (rand::random::<i32>() & 0x7fff_ffff, rand::random::<i32>());
            if let std::collections::hash_map::Entry::Vacant(e) = m.entry(key) {
                e.insert(upstream);
                return Registration { map: self.clone(), key };
            }
        }
    }

    /// The upstream key for a client's cancel request, if it names a live
    /// session. Secrets that are not 4 bytes (protocol 3.2) never match.
    pub fn lookup(&self, pid: i32, secret: &[u8]) -> Option<(i32, i32)> {
        let secret = i32::from_be_bytes(secret.try_into().ok()?);
        self.keys.lock().ok()?.get(&(pid, secret)).copied()
    }

    /// Decides what to do with a CancelRequest from `peer`: a key that names
    /// a live session is forwarded whatever the peer's budget; an unknown key
    /// is charged to the peer's budget.
    pub fn admit(&self, peer: IpAddr, pid: i32, secret: &[u8]) -> CancelDecision {
        match self.lookup(pid, secret) {
            Some(upstream) => CancelDecision::Forward(upstream),
            None => match self.charge(peer) {
                n if n <= MAX_CANCELS_PER_PEER_PER_SEC => CancelDecision::Unknown,
                n => CancelDecision::UnknownOverBudget {
                    first: n == MAX_CANCELS_PER_PEER_PER_SEC + 1,
                },
            },
        }
    }

    /// Charges one unknown-key request to `peer` and returns how many it has
    /// sent in the current one-second window (this one included).
    fn charge(&self, peer: IpAddr) -> u32 {
        let now = Instant::now();
        let mut m = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_TRACKED_PEERS {
            m.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(1));
        }
        let e = m.entry(peer).or_insert((now, 0));
        if now.duration_since(e.0) >= Duration::from_secs(1) {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
        e.1
    }

    /// Live sessions with a key.
    pub fn len(&self) -> usize {
        self.keys.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no session holds a key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_and_unmap() {
        let map = Arc::new(CancelMap::default());
        let reg = map.register((42, 7));
        let (pid, secret) = reg.key();
        assert_eq!(map.lookup(pid, &secret.to_be_bytes()), Some((42, 7)));
        assert_eq!(map.lookup(pid, &secret.wrapping_add(1).to_be_bytes()), None);
        assert_eq!(map.lookup(pid, &[0; 32]), None);
        drop(reg);
        assert_eq!(map.lookup(pid, &secret.to_be_bytes()), None);
        assert!(map.is_empty());
    }

    #[test]
    fn a_live_key_is_forwarded_however_many_bogus_keys_its_address_sent() {
        let map = Arc::new(CancelMap::default());
        let reg = map.register((42, 7));
        let (pid, secret) = reg.key();
        let shared: IpAddr = "10.0.0.9".parse().unwrap();
        let decisions: Vec<CancelDecision> = (0..100)
            .map(|i| map.admit(shared, pid ^ 1, &(secret ^ i).to_be_bytes()))
            .collect();
        let within = MAX_CANCELS_PER_PEER_PER_SEC as usize;
        assert!(decisions[..within].iter().all(|d| *d == CancelDecision::Unknown));
        assert_eq!(decisions[within], CancelDecision::UnknownOverBudget { first: true });
        assert!(decisions[within + 1..]
            .iter()
            .all(|d| *d == CancelDecision::UnknownOverBudget { first: false }));
        assert_eq!(
            map.admit(shared, pid, &secret.to_be_bytes()),
            CancelDecision::Forward((42, 7))
        );
        assert_eq!(
            map.admit(shared, pid, &secret.to_be_bytes()),
            CancelDecision::Forward((42, 7))
        );
    }

    #[test]
    fn limiter_caps_a_flooding_peer_only() {
        let map = CancelMap::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let within = (0..100)
            .filter(|_| map.admit(a, 1, &2i32.to_be_bytes()) == CancelDecision::Unknown)
            .count();
        assert_eq!(within, MAX_CANCELS_PER_PEER_PER_SEC as usize);
        assert_eq!(map.admit(b, 1, &2i32.to_be_bytes()), CancelDecision::Unknown);
    }
}
