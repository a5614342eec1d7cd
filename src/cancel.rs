//! Cancel keys. Each client gets a random BackendKeyData from the proxy; a
//! CancelRequest arriving on the listen port is mapped to the upstream key of
//! that session and forwarded. Unknown keys do nothing, silently, like
//! PostgreSQL. Requests are rate-limited per peer address.

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

    /// Whether `peer` may send another cancel request now.
    pub fn allow(&self, peer: IpAddr) -> bool {
        let now = Instant::now();
        let Ok(mut m) = self.limiter.lock() else { return false };
        if m.len() >= MAX_TRACKED_PEERS {
            m.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(1));
        }
        let e = m.entry(peer).or_insert((now, 0));
        if now.duration_since(e.0) >= Duration::from_secs(1) {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1 <= MAX_CANCELS_PER_PEER_PER_SEC
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
    fn limiter_caps_a_flooding_peer_only() {
        let map = CancelMap::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let allowed = (0..100).filter(|_| map.allow(a)).count();
        assert_eq!(allowed, MAX_CANCELS_PER_PEER_PER_SEC as usize);
        assert!(map.allow(b));
    }
}
