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
    keys: Mutex<HashMap<(i32, i32), Target>>,
    limiter: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// Where a proxy key's cancel goes.
#[derive(Debug, Clone)]
enum Target {
    /// Session mode: the session's own upstream key.
    Fixed((i32, i32)),
    /// Transaction pool mode: whichever backend the session holds now.
    Pooled(Arc<PooledTarget>),
}

/// The backend a pooled client session holds, if any: its cancel may reach
/// only that backend, and only while the session holds it.
#[derive(Debug, Default)]
pub struct PooledTarget {
    current: Mutex<Option<HeldBackend>>,
}

/// A backend held by a pooled client session.
#[derive(Debug, Clone)]
pub struct HeldBackend {
    /// The pool's id of the backend.
    pub backend_id: u64,
    /// Its upstream key.
    pub key: (i32, i32),
    /// Held while a cancel is on its way to it; the pool takes it before it
    /// hands the backend to another session, so a late cancel can never
    /// reach the next session's work.
    pub cancel_lock: Arc<tokio::sync::Mutex<()>>,
}

impl PooledTarget {
    /// The session now holds `b` (`None`: it holds nothing).
    pub fn set(&self, b: Option<HeldBackend>) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = b;
    }

    /// The backend held now.
    pub fn get(&self) -> Option<HeldBackend> {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A pooled session's cancel target, compared by identity.
#[derive(Debug, Clone)]
pub struct PooledRef(pub Arc<PooledTarget>);

impl PartialEq for PooledRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for PooledRef {}

/// What [`CancelMap::admit`] decided for one CancelRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelDecision {
    /// The key names a live session: forward the cancel to this upstream key.
    Forward((i32, i32)),
    /// The key names a live pooled session: forward the cancel to the
    /// backend it holds, if it holds one.
    ForwardPooled(PooledRef),
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
        self.insert(Target::Fixed(upstream))
    }

    /// Issues a fresh random proxy key for a pooled session.
    pub fn register_pooled(self: &Arc<Self>, target: Arc<PooledTarget>) -> Registration {
        self.insert(Target::Pooled(target))
    }

    fn insert(self: &Arc<Self>, target: Target) -> Registration {
        let mut m = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let key = (rand::random::<i32>() & 0x7fff_ffff, rand::random::<i32>());
            if let std::collections::hash_map::Entry::Vacant(e) = m.entry(key) {
                e.insert(target);
                return Registration { map: self.clone(), key };
            }
        }
    }

    fn target(&self, pid: i32, secret: &[u8]) -> Option<Target> {
        let secret = i32::from_be_bytes(secret.try_into().ok()?);
        self.keys.lock().ok()?.get(&(pid, secret)).cloned()
    }

    /// The upstream key for a client's cancel request, if it names a live
    /// session-mode session. Secrets that are not 4 bytes (protocol 3.2)
    /// never match.
    pub fn lookup(&self, pid: i32, secret: &[u8]) -> Option<(i32, i32)> {
        match self.target(pid, secret)? {
            Target::Fixed(k) => Some(k),
            Target::Pooled(_) => None,
        }
    }

    /// Decides what to do with a CancelRequest from `peer`: a key that names
    /// a live session is forwarded whatever the peer's budget; an unknown key
    /// is charged to the peer's budget.
    pub fn admit(&self, peer: IpAddr, pid: i32, secret: &[u8]) -> CancelDecision {
        match self.target(pid, secret) {
            Some(Target::Fixed(upstream)) => CancelDecision::Forward(upstream),
            Some(Target::Pooled(t)) => CancelDecision::ForwardPooled(PooledRef(t)),
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
