//! The PostgreSQL wire protocol, as far as the proxy needs it: framing with
//! hard length caps, the untagged startup-phase packets, and the backend
//! messages the proxy writes itself.
//!
//! Framing never makes policy decisions; it only says where a message starts,
//! how long it is, and whether that length is allowed.

pub mod backend;
pub mod frame;
pub mod startup;
