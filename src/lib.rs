//! pg-tenant-proxy: a PostgreSQL wire-protocol sidecar that pins each session's
//! tenant from a verified JWT and refuses every attempt to move it.
//!
//! # Layout (the data path, in order)
//! - [`server`]: accept loop, connection cap, graceful drain.
//! - [`handshake`]: one client's SSL/GSS negotiation, TLS, startup parameters
//!   and the cleartext password that carries the token.
//! - [`auth`]: token verification, claims to [`auth::Identity`].
//! - [`upstream`]: connect, TLS, SCRAM/MD5/cleartext, pinned startup packet.
//! - [`context`]: the proof of the pinned tenant that PostgreSQL verifies.
//! - [`relay`]: the hot loop in both directions; consults the [`guard`].
//! - [`guard`]: statement policy (`Verdict::Allow | Rewrite | Deny`), fail closed.
//! - [`session`]: ties the above together for one client.
//! - [`pin`]: what is pinned upstream and which values restate the pin,
//!   shared by the handshake, the upstream login and the guard.
//!
//! Supporting pieces: [`protocol`] (frames, length caps, startup packets, the
//! backend messages the proxy writes), [`stream`] (one type for TCP, Unix and
//! TLS), [`tls`], [`upstream_auth`] (which login methods may carry the
//! upstream password), [`cancel`] (proxy-issued cancel keys), [`config`],
//! [`error`] (SQLSTATEs), [`token`] (minting for demos and tests), [`quota`]
//! (sessions per organization), [`logging`] (log lines a client cannot forge).
//!
//! # Threat model in brief
//! Clients are untrusted: every byte they send is bounded and validated, and
//! they can never choose the tenant. Token key material, the configuration and
//! the upstream server are trusted; the way to the server is not, so the
//! upstream login verifies the server and guards the password (see
//! [`upstream_auth`]). See `docs/threat-model.md`.

pub mod admin;
pub mod auth;
pub mod cancel;
pub mod config;
pub mod context;
pub mod error;
pub mod guard;
pub mod handshake;
pub mod logging;
pub mod metrics;
pub mod pin;
pub mod pool;
pub mod protocol;
pub mod quota;
pub mod relay;
pub mod screen;
pub mod server;
pub mod session;
pub mod stream;
pub mod tls;
pub mod token;
pub mod tracked;
pub mod upstream;
pub mod upstream_auth;
