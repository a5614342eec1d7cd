//! pg-tenant-proxy: a PostgreSQL wire-protocol sidecar that pins each session's
//! tenant from a verified JWT and refuses every attempt to move it.
//!
//! # Layout (the data path, in order)
//! - [`server`]: accept loop, connection cap, cancel dispatch, graceful drain.
//! - [`protocol`]: frames and length caps; startup, SSL and cancel packets;
//!   the backend messages the proxy writes itself.
//! - [`handshake`]: one client's SSL/GSS negotiation, TLS, startup parameters
//!   and the cleartext password that carries the token.
//! - [`auth`]: token verification, claims to [`auth::Identity`].
//! - [`upstream`]: connect, TLS, SCRAM/MD5/cleartext, pinned startup packet.
//! - [`relay`]: the hot loop in both directions; consults the [`guard`].
//! - [`guard`]: statement policy (`Verdict::Allow | Rewrite | Deny`), fail closed.
//! - [`session`]: ties the above together for one client.
//! - [`config`], [`tls`], [`cancel`], [`error`], [`token`]: supporting pieces.
//!
//! # Threat model in brief
//! Clients are untrusted: every byte they send is bounded and validated, and
//! they can never choose the tenant. The token key material and the upstream
//! server are trusted. See `docs/threat-model.md`.

pub mod error;
pub mod guard;
