//! Transaction pool mode through a real proxy in front of a real
//! PostgreSQL 15: tenants interleaved on a pool of one backend never see
//! each other's rows, in simple and extended protocol, in and out of
//! explicit transactions, with errors, cancels and disconnects; session
//! state is carried or refused; a backend between transactions carries no
//! tenant.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

/// The pin form these tests run with.
const PIN_FORM: &str = "set_config";

include!("pooling/cases.rs");
