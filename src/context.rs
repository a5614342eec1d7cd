//! The verified tenant context: the proof the proxy adds to every upstream
//! startup packet, next to the organization and user it pins, so that
//! PostgreSQL itself can tell a context the proxy made from one a session
//! set (`sql/05_context.sql` checks it).
//!
//! The proof is `v1,<key id>,<expires>,<client addr>,<client port>,<mac>`,
//! where `<mac>` is HMAC-SHA256 (hex) over the newline-joined fields
//! `pgtp-context-v1`, key id, expires, client addr, client port, organization
//! and user. The binding (client address and port) is the upstream
//! connection's local end, which is what the server reports as
//! `inet_client_addr()`/`inet_client_port()`; a Unix-socket connection binds
//! to `unix` and an empty port. See `docs/threat-model.md` for what that
//! binding stops and what it does not.
//!
//! Inputs are trusted: the key comes from the operator's file, the identity
//! from a verified token, the binding from the proxy's own socket. The key is
//! never logged or printed; only its fingerprint is.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use aws_lc_rs::hmac;

/// The setting that carries the proof, pinned like the organization and user.
pub const PROOF_SETTING: &str = "app.context_proof";
/// Shortest key accepted, in bytes (the same rule as the SQL side).
pub const MIN_KEY_BYTES: usize = 32;
/// Longest key id, in bytes.
pub const MAX_KEY_ID_BYTES: usize = 64;
/// The key id used when none is configured.
pub const DEFAULT_KEY_ID: &str = "1";
/// Domain label, the first line of every signed message.
const DOMAIN: &str = "pgtp-context-v1";
/// Message whose HMAC (first 8 bytes, hex) identifies a key.
const FINGERPRINT_LABEL: &[u8] = b"pg-tenant-proxy context key fingerprint";

/// What a proof is bound to: the upstream connection as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// TCP: the proxy's local address and port of the upstream connection.
    Tcp(SocketAddr),
    /// A Unix-domain socket: the server reports no address or port.
    Unix,
}

impl Binding {
    /// The TCP binding of a local socket address, with an IPv4-mapped IPv6
    /// address written as IPv4 (the form the server reports).
    pub fn tcp(local: SocketAddr) -> Binding {
        let ip = match local.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        Binding::Tcp(SocketAddr::new(ip, local.port()))
    }

    fn fields(&self) -> (String, String) {
        match self {
            Binding::Tcp(a) => (a.ip().to_string(), a.port().to_string()),
            Binding::Unix => ("unix".to_owned(), String::new()),
        }
    }
}

/// A signing key with its id.
#[derive(Clone)]
pub struct ContextKey {
    id: String,
    key: hmac::Key,
    fingerprint: String,
}

impl std::fmt::Debug for ContextKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextKey")
            .field("id", &self.id)
            .field("fingerprint", &self.fingerprint)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Whether `id` is a valid key id: 1-64 of `A-Z a-z 0-9 _ -`.
pub fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl ContextKey {
    /// A key from its id and secret bytes (at least [`MIN_KEY_BYTES`]).
    pub fn new(id: &str, secret: &[u8]) -> Result<ContextKey, String> {
        if !valid_key_id(id) {
            return Err(format!(
                "context key id {id:?} must be 1 to {MAX_KEY_ID_BYTES} of A-Z, a-z, 0-9, _ and -"
            ));
        }
        if secret.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the context key must be at least {MIN_KEY_BYTES} bytes (it has {})",
                secret.len()
            ));
        }
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let tag = hmac::sign(&key, FINGERPRINT_LABEL);
        let fingerprint = hex(tag.as_ref().get(..8).unwrap_or_default());
        Ok(ContextKey {
            id: id.to_owned(),
            key,
            fingerprint,
        })
    }

    /// The key id, as installed with `tenant.add_context_key`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// First 8 bytes of HMAC(key, label), hex; `tenant.context_key_list`
    /// shows the same value.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The proof for `organization` and `user` (canonical UUID text; `user`
    /// empty when the token has none), valid until `expires_at` (Unix
    /// seconds), on the connection `binding`.
    pub fn proof(&self, organization: &str, user: &str, expires_at: u64, binding: &Binding) -> String {
        let (addr, port) = binding.fields();
        let expires = expires_at.to_string();
        let message = [DOMAIN, &self.id, &expires, &addr, &port, organization, user].join("\n");
        let tag = hmac::sign(&self.key, message.as_bytes());
        format!("v1,{},{expires},{addr},{port},{}", self.id, hex(tag.as_ref()))
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Whether the proxy signs the context, and with which key.
#[derive(Debug, Clone)]
pub enum Verification {
    /// Sign with this key (the default; a key is required).
    On(std::sync::Arc<ContextKey>),
    /// Explicitly off: no proof is sent; the database must have verification
    /// off too (`tenant.set_context_verification(false)`).
    Off,
}

/// `pg-tenant-proxy context-proof`: prints a proof, for DBAs checking a
/// setup by hand and for the isolation tests.
#[derive(Debug, clap::Args)]
pub struct ProofArgs {
    /// File holding the context key (one trailing newline is not part of it).
    #[arg(long, env = "PGTP_CONTEXT_KEY_FILE", value_name = "FILE")]
    pub context_key_file: PathBuf,
    /// Key id, as installed with tenant.add_context_key.
    #[arg(long, env = "PGTP_CONTEXT_KEY_ID", value_name = "ID", default_value = DEFAULT_KEY_ID)]
    pub context_key_id: String,
    /// Organization UUID.
    #[arg(long, value_name = "UUID")]
    pub org: uuid::Uuid,
    /// User UUID (omit for none).
    #[arg(long, value_name = "UUID")]
    pub user: Option<uuid::Uuid>,
    /// Seconds from now until the proof expires.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub ttl: u64,
    /// Client address the server sees (inet_client_addr()); omit with --unix.
    #[arg(long, value_name = "IP", requires = "client_port", conflicts_with = "unix")]
    pub client_addr: Option<IpAddr>,
    /// Client port the server sees (inet_client_port()).
    #[arg(long, value_name = "PORT", requires = "client_addr")]
    pub client_port: Option<u16>,
    /// Bind to a Unix-socket connection instead of an address and port.
    #[arg(long)]
    pub unix: bool,
}

/// Builds the proof `args` ask for.
pub fn mint_proof(args: &ProofArgs) -> Result<String, String> {
    let secret = crate::config::read_secret(&args.context_key_file, "context key file")?;
    let key = ContextKey::new(&args.context_key_id, secret.as_bytes())?;
    let binding = match (args.unix, args.client_addr, args.client_port) {
        (true, None, None) => Binding::Unix,
        (false, Some(ip), Some(port)) => Binding::tcp(SocketAddr::new(ip, port)),
        _ => return Err("give either --client-addr and --client-port, or --unix".into()),
    };
    let expires = crate::auth::jwt::unix_now().saturating_add(args.ttl);
    let user = args.user.map(|u| u.hyphenated().to_string()).unwrap_or_default();
    Ok(key.proof(&args.org.hyphenated().to_string(), &user, expires, &binding))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hmac_hex(key: &[u8], data: &[u8]) -> String {
        hex(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data).as_ref())
    }

    /// RFC 4231, HMAC-SHA-256: the same vectors tests/isolation/context_hmac.sql
    /// checks against the SQL implementation.
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let long_key = [0xaa_u8; 131];
        let cases: [(&[u8], &[u8], &str); 6] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                &[0xaa; 20],
                &[0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                &[
                    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
                ],
                &[0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                &long_key,
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                &long_key,
                b"This is a test using a larger than block-size key and a larger than block-size data. \
                  The key needs to be hashed before being used by the HMAC algorithm.",
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (key, data, want) in cases {
            assert_eq!(hmac_hex(key, data), want);
        }
        // Test case 5 is truncated to 128 bits.
        assert!(hmac_hex(&[0x0c; 20], b"Test With Truncation").starts_with("a3b6167473100ee06e0c796c2955552b"));
    }

    const KEY: &[u8] = b"context-key-0123456789abcdef0123456789";
    const ORG: &str = "aaaaaaaa-0000-4000-8000-000000000001";
    const USER: &str = "aaaaaaaa-0001-4000-8000-000000000001";

    /// A known answer: tests/isolation/context_hmac.sql recomputes this MAC
    /// with tenant.hmac_sha256 and checks tenant.verified_context() accepts
    /// the same fields, so the Rust and SQL sides agree byte for byte.
    #[test]
    fn proof_known_answer() {
        let key = ContextKey::new("1", KEY).unwrap();
        let tcp = Binding::tcp("127.0.0.1:54321".parse().unwrap());
        assert_eq!(
            key.proof(ORG, USER, 4_102_444_800, &tcp),
            "v1,1,4102444800,127.0.0.1,54321,\
             5d5ca6677b652d1ea00cce8388c9a720b18aa6da39a73739bcd5e6df9d55727a"
        );
    }

    #[test]
    fn proof_is_the_hmac_of_the_documented_message() {
        let key = ContextKey::new("k-2", KEY).unwrap();
        let proof = key.proof(ORG, "", 1_700_000_000, &Binding::Unix);
        let message = format!("pgtp-context-v1\nk-2\n1700000000\nunix\n\n{ORG}\n");
        assert_eq!(
            proof,
            format!("v1,k-2,1700000000,unix,,{}", hmac_hex(KEY, message.as_bytes()))
        );
    }

    #[test]
    fn every_field_changes_the_mac() {
        let key = ContextKey::new("1", KEY).unwrap();
        let tcp = Binding::tcp("10.0.0.5:40000".parse().unwrap());
        let base = key.proof(ORG, USER, 100, &tcp);
        let mac = |p: &str| p.rsplit(',').next().unwrap_or_default().to_owned();
        let other_key = ContextKey::new("2", KEY).unwrap();
        let variants = [
            key.proof("bbbbbbbb-0000-4000-8000-000000000001", USER, 100, &tcp),
            key.proof(ORG, "", 100, &tcp),
            key.proof(ORG, USER, 101, &tcp),
            key.proof(ORG, USER, 100, &Binding::tcp("10.0.0.5:40001".parse().unwrap())),
            key.proof(ORG, USER, 100, &Binding::tcp("10.0.0.6:40000".parse().unwrap())),
            key.proof(ORG, USER, 100, &Binding::Unix),
            other_key.proof(ORG, USER, 100, &tcp),
            ContextKey::new("1", b"another-key-0123456789abcdef012345")
                .unwrap()
                .proof(ORG, USER, 100, &tcp),
        ];
        for v in &variants {
            assert_ne!(mac(v), mac(&base), "{v}");
        }
    }

    #[test]
    fn ipv4_mapped_addresses_are_written_as_ipv4() {
        let b = Binding::tcp("[::ffff:127.0.0.1]:5000".parse().unwrap());
        assert_eq!(b, Binding::Tcp("127.0.0.1:5000".parse().unwrap()));
        let v6 = Binding::tcp("[::1]:5000".parse().unwrap());
        assert_eq!(v6.fields(), ("::1".to_owned(), "5000".to_owned()));
    }

    #[test]
    fn short_keys_and_bad_ids_are_refused() {
        assert!(ContextKey::new("1", &KEY[..31])
            .unwrap_err()
            .contains("at least 32 bytes"));
        assert!(ContextKey::new("1", &KEY[..32]).is_ok());
        for bad in ["", "a,b", "a b", "ü", &"x".repeat(65)] {
            assert!(ContextKey::new(bad, KEY).is_err(), "{bad:?}");
        }
        assert!(ContextKey::new(&"x".repeat(64), KEY).is_ok());
    }

    #[test]
    fn the_guard_protects_the_proof_setting() {
        assert!(crate::guard::PINNED_SETTINGS.contains(&PROOF_SETTING));
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let key = ContextKey::new("1", KEY).unwrap();
        let shown = format!("{key:?} {:?}", Verification::On(std::sync::Arc::new(key.clone())));
        assert!(!shown.contains("context-key-0123"), "{shown}");
        assert!(shown.contains(key.fingerprint()));
    }
}
