//! Which login methods the proxy may answer with the upstream role's password,
//! and over which connections. That password opens every tenant, so by
//! default it is sent in cleartext or as an MD5 hash only over a Unix socket,
//! loopback, or TLS whose certificate was verified (`sslmode=verify-ca` or
//! `verify-full`). SCRAM-SHA-256 (which never sends the password, and whose
//! server proof the login verifies) and trust are allowed everywhere.
//!
//! The operator can choose otherwise with libpq 16's `require_auth` in the
//! upstream URL: a comma-separated list of the methods allowed
//! (`password`, `md5`, `scram-sha-256`, `none`), or of the methods refused,
//! each with a `!` (`!password,!md5`). An explicit list is applied as given,
//! whatever the connection.
//!
//! Input: the operator's URL parameter (trusted, validated at start-up) and
//! the server's authentication request (the server is checked, not trusted).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A way the server can ask the proxy to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// AuthenticationCleartextPassword: the password itself is sent.
    Password,
    /// AuthenticationMD5Password: the answer is salted, but its inner hash is
    /// as good as the password, and it can be brute-forced offline.
    Md5,
    /// SASL with SCRAM-SHA-256.
    ScramSha256,
    /// No authentication: the first message is AuthenticationOk.
    None,
}

impl AuthMethod {
    const ALL: [AuthMethod; 4] = [
        AuthMethod::Password,
        AuthMethod::Md5,
        AuthMethod::ScramSha256,
        AuthMethod::None,
    ];

    /// The name libpq's `require_auth` uses.
    pub const fn name(self) -> &'static str {
        match self {
            AuthMethod::Password => "password",
            AuthMethod::Md5 => "md5",
            AuthMethod::ScramSha256 => "scram-sha-256",
            AuthMethod::None => "none",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            AuthMethod::Password => 1,
            AuthMethod::Md5 => 2,
            AuthMethod::ScramSha256 => 4,
            AuthMethod::None => 8,
        }
    }

    /// Whether this method puts the password (or an equivalent of it) on the wire.
    const fn exposes_password(self) -> bool {
        matches!(self, AuthMethod::Password | AuthMethod::Md5)
    }
}

/// What kind of connection the login runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A Unix-domain socket.
    Unix,
    /// TCP (TLS or not) whose peer is 127.0.0.1 or ::1.
    Loopback,
    /// TLS with the server certificate verified (verify-ca or verify-full).
    VerifiedTls,
    /// Anything else: plain TCP, or TLS without certificate verification.
    Network,
}

impl Transport {
    /// Whether a connected peer address counts as loopback: exactly 127.0.0.1
    /// or ::1 (also as ::ffff:127.0.0.1), the addresses `localhost` names.
    /// Other 127.x.y.z addresses are treated as network: they usually belong
    /// to port forwarders and sidecars whose far side is not this host.
    pub fn is_loopback_peer(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => v4 == Ipv4Addr::LOCALHOST,
            IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST || v6.to_ipv4_mapped() == Some(Ipv4Addr::LOCALHOST),
        }
    }
}

/// The operator's `require_auth`, or the default policy when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequireAuth {
    /// Allowed methods as bits of [`AuthMethod::bit`]; `None` for the default.
    explicit: Option<u8>,
}

/// Why the proxy will not answer the server's authentication request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthRefusal {
    /// The default policy: cleartext or MD5 over a connection not protected.
    #[error("the server asked for {} authentication over {transport:?}; the password is sent that way only over a Unix socket, loopback or verified TLS (or with require_auth)", method.name())]
    Exposed {
        /// What the server asked for.
        method: AuthMethod,
        /// Over what.
        transport: Transport,
    },
    /// The operator's `require_auth` does not list this method.
    #[error("the server asked for {} authentication, which require_auth does not allow", method.name())]
    NotAllowed {
        /// What the server asked for.
        method: AuthMethod,
    },
}

impl RequireAuth {
    /// Parses libpq's `require_auth` value.
    pub fn parse(value: &str) -> Result<RequireAuth, String> {
        let mut allowed = 0u8;
        let mut refused = 0u8;
        for item in value.split(',') {
            let (negated, name) = match item.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, item),
            };
            let method = AuthMethod::ALL
                .into_iter()
                .find(|m| m.name() == name)
                .ok_or_else(|| {
                    format!(
                        "require_auth: unknown or unsupported method {name:?} (use password, md5, scram-sha-256 or none, each optionally with '!')"
                    )
                })?;
            let set = if negated { &mut refused } else { &mut allowed };
            if *set & method.bit() != 0 {
                return Err(format!("require_auth: method {name:?} is listed more than once"));
            }
            *set |= method.bit();
        }
        let all = AuthMethod::ALL.iter().fold(0, |acc, m| acc | m.bit());
        match (allowed, refused) {
            (a, 0) => Ok(RequireAuth { explicit: Some(a) }),
            (0, r) if r != all => Ok(RequireAuth {
                explicit: Some(all & !r),
            }),
            (0, _) => Err("require_auth: every method is refused".into()),
            _ => Err("require_auth: negative (!) and positive methods cannot be mixed".into()),
        }
    }

    /// Whether the operator set `require_auth`.
    pub fn is_explicit(&self) -> bool {
        self.explicit.is_some()
    }

    /// Whether the proxy may answer a request for `method` over `transport`.
    pub fn check(&self, method: AuthMethod, transport: Transport) -> Result<(), AuthRefusal> {
        match self.explicit {
            Some(bits) if bits & method.bit() != 0 => Ok(()),
            Some(_) => Err(AuthRefusal::NotAllowed { method }),
            None if method.exposes_password() && transport == Transport::Network => {
                Err(AuthRefusal::Exposed { method, transport })
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_TRANSPORTS: [Transport; 4] = [
        Transport::Unix,
        Transport::Loopback,
        Transport::VerifiedTls,
        Transport::Network,
    ];

    #[test]
    fn by_default_the_password_crosses_only_protected_connections() {
        let d = RequireAuth::default();
        for t in ALL_TRANSPORTS {
            for m in AuthMethod::ALL {
                let ok = d.check(m, t).is_ok();
                let expected = !(t == Transport::Network && matches!(m, AuthMethod::Password | AuthMethod::Md5));
                assert_eq!(ok, expected, "{m:?} over {t:?}");
            }
        }
    }

    #[test]
    fn explicit_lists_apply_whatever_the_connection() {
        let r = RequireAuth::parse("scram-sha-256").unwrap();
        assert!(r.check(AuthMethod::ScramSha256, Transport::Network).is_ok());
        assert_eq!(
            r.check(AuthMethod::None, Transport::Unix),
            Err(AuthRefusal::NotAllowed {
                method: AuthMethod::None
            })
        );
        let r = RequireAuth::parse("password,md5").unwrap();
        assert!(r.check(AuthMethod::Password, Transport::Network).is_ok());
        assert!(r.check(AuthMethod::ScramSha256, Transport::Network).is_err());
        let r = RequireAuth::parse("!none").unwrap();
        assert!(r.check(AuthMethod::Md5, Transport::Network).is_ok());
        assert!(r.check(AuthMethod::None, Transport::Loopback).is_err());
    }

    #[test]
    fn malformed_lists_are_refused() {
        for bad in [
            "",
            "gss",
            "password,!md5",
            "md5,md5",
            "!password,!md5,!scram-sha-256,!none",
            "MD5",
        ] {
            assert!(RequireAuth::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_the_localhost_addresses_are_loopback() {
        for (ip, expected) in [
            ("127.0.0.1", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("127.0.0.2", false),
            ("10.0.0.1", false),
            ("::", false),
        ] {
            assert_eq!(Transport::is_loopback_peer(ip.parse().unwrap()), expected, "{ip}");
        }
    }
}
