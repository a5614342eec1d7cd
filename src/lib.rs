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
//!
//! Supporting pieces: [`protocol`] (frames, length caps, startup packets, the
//! backend messages the proxy writes), [`stream`] (one type for TCP, Unix and
//! TLS), [`tls`], [`cancel`] (proxy-issued cancel keys), [`config`],
//! [`error`] (SQLSTATEs), [`token`] (minting for demos and tests).
//!
//! # Threat model in brief
//! Clients are untrusted: every byte they send is bounded and validated, and
//! they can never choose the tenant. Token key material, the configuration and
//! the upstream server are trusted. See `docs/threat-model.md`.

pub mod auth;
pub mod cancel;
pub mod config;
pub mod context;
pub mod error;
pub mod guard;
pub mod handshake;
pub mod protocol;
pub mod relay;
pub mod server;
pub mod session;
pub mod stream;
pub mod tls;
pub mod token;
pub mod upstream;
