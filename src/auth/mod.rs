//! Client authentication: the token a client sends as its password becomes
//! an [`Identity`], or the session ends with FATAL 28P01/28000.

pub mod jwks_url;
pub mod jwt;

pub use jwt::{AuthError, Identity, Verifier};
