//! Token verification with jsonwebtoken: algorithms pinned by key family,
//! `exp` required, `nbf`/`iss`/`aud` honoured, keys chosen by `kid` from a
//! JWKS file. The token is untrusted input; it is never logged or echoed.
//!
//! Claims become an [`Identity`] only if the organization claim is a JSON
//! string holding a non-nil UUID (re-serialised canonically), and the user
//! claim, when present, is one too.
//!
//! Refused besides what jsonwebtoken checks: a header with `crit` (RFC 7515
//! §4.1.11: the proxy implements no JWS extension, so it must refuse any it
//! is told is critical), and an `exp` further away than
//! [`MAX_TOKEN_LIFETIME_SECS`] (so no deadline arithmetic can overflow).

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use uuid::Uuid;

use crate::config::{JwtConfig, KeySource};
use crate::error::{ClientError, SqlState};

/// Shortest HMAC secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_HMAC_SECRET_LEN: usize = 32;
/// Longest token accepted, in bytes (the password message cap).
pub const MAX_TOKEN_LEN: usize = 65_536;
/// Longest claim string looked at, in bytes.
const MAX_CLAIM_LEN: usize = 64;
/// Longest token lifetime accepted whatever the configuration says: ten
/// years. `exp` is an unsigned 64-bit number of seconds; a value near 2^64
/// is not a real expiry, and capping it keeps every deadline computed from it
/// far from overflow. `[jwt] max_ttl_secs` can set a tighter limit.
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 10 * 365 * 24 * 3600;

/// The refusal for a `kid` that names no key.
const UNKNOWN_KID: &str = "token kid names no known key";

/// Who a verified token says the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The tenant; pinned as `app.current_organization_id`.
    pub organization_id: Uuid,
    /// The user, pinned as `app.current_user_id` (empty when absent).
    pub user_id: Option<Uuid>,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: u64,
}

/// Why a token was refused. The text is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// The token is malformed, badly signed, expired or otherwise not valid (28P01).
    InvalidToken(String),
    /// The token is valid but does not grant a session (28000).
    NotAllowed(String),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::InvalidToken(m) | AuthError::NotAllowed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for AuthError {}

impl AuthError {
    /// The FATAL ErrorResponse this becomes.
    pub fn to_client(&self) -> ClientError {
        match self {
            AuthError::InvalidToken(m) => ClientError::fatal(
                SqlState::InvalidPassword,
                format!("password authentication failed: {m}"),
            )
            .with_hint("the password must be a valid, unexpired token for this proxy"),
            AuthError::NotAllowed(m) => {
                ClientError::fatal(SqlState::InvalidAuthorization, format!("token not accepted: {m}"))
            }
        }
    }
}

fn invalid(m: impl Into<String>) -> AuthError {
    AuthError::InvalidToken(m.into())
}
fn not_allowed(m: impl Into<String>) -> AuthError {
    AuthError::NotAllowed(m.into())
}

/// Keys by `kid`, each with the algorithms it may verify.
pub(crate) type KeyMap = HashMap<String, (DecodingKey, Vec<Algorithm>)>;

enum Keys {
    /// One key; any of these algorithms.
    Single(DecodingKey, Vec<Algorithm>),
    /// By `kid`: key and its algorithms.
    ByKid(KeyMap),
    /// By `kid`, from a JWKS fetched over HTTPS and kept fresh.
    Remote(std::sync::Arc<crate::auth::jwks_url::RemoteJwks>),
}

/// `[jwt] algorithms` parsed.
fn narrowed_algorithms(cfg: &JwtConfig) -> Result<Vec<Algorithm>, String> {
    cfg.algorithms
        .iter()
        .map(|a| Algorithm::from_str(a).map_err(|_| format!("unknown JWT algorithm {a:?}")))
        .collect()
}

/// The algorithms of `family` left by the `narrowed` allow-list (all of them
/// when it is empty); none left is an error.
fn narrow(narrowed: &[Algorithm], family: &[Algorithm]) -> Result<Vec<Algorithm>, String> {
    let algs: Vec<Algorithm> = family
        .iter()
        .copied()
        .filter(|a| narrowed.is_empty() || narrowed.contains(a))
        .collect();
    if algs.is_empty() {
        Err("[jwt] algorithms leaves no algorithm that fits the key".into())
    } else {
        Ok(algs)
    }
}

/// Parses a JWKS document (from a file or a provider's URL; `what` names it
/// in messages) into signing keys by `kid`. Encryption keys are skipped;
/// every signing key needs a distinct `kid`; at least one must remain.
pub(crate) fn parse_jwks(text: &str, what: &str, narrowed: &[Algorithm]) -> Result<KeyMap, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("{what} is not valid: {e}"))?;
    let mut by_kid = HashMap::new();
    for jwk in &set.keys {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let Some(kid) = jwk.common.key_id.clone() else {
            return Err(format!("{what}: every signing key needs a kid"));
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("{what} key {kid:?}: {e}"))?;
        let algs = match jwk.common.key_algorithm.map(Algorithm::try_from) {
            Some(Ok(a)) => narrow(narrowed, &[a])?,
            Some(Err(_)) => return Err(format!("{what} key {kid:?}: algorithm is not a signing algorithm")),
            None => narrow(narrowed, key.family().algorithms())?,
        };
        if by_kid.insert(kid.clone(), (key, algs)).is_some() {
            return Err(format!("{what}: kid {kid:?} appears twice"));
        }
    }
    if by_kid.is_empty() {
        return Err(format!("{what} has no signing keys"));
    }
    Ok(by_kid)
}

/// Verifies tokens; built once from the configuration and shared.
pub struct Verifier {
    keys: Keys,
    cfg: JwtConfig,
    org_path: Vec<String>,
    user_path: Vec<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("key", &self.cfg.key)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Loads the key material named in `cfg` and checks it is usable.
    pub fn new(cfg: &JwtConfig) -> Result<Verifier, String> {
        let narrowed = narrowed_algorithms(cfg)?;
        let fit = |family: &[Algorithm]| narrow(&narrowed, family);
        let keys = match &cfg.key {
            KeySource::SecretFile(p) => {
                let secret = crate::config::read_secret(p, "JWT secret file")?;
                if secret.len() < MIN_HMAC_SECRET_LEN {
                    return Err(format!(
                        "JWT secret file {} holds {} bytes; HMAC secrets need at least {MIN_HMAC_SECRET_LEN}",
                        p.display(),
                        secret.len()
                    ));
                }
                Keys::Single(
                    DecodingKey::from_secret(secret.as_bytes()),
                    fit(&[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512])?,
                )
            }
            KeySource::PublicKeyFile(p) => {
                let pem = std::fs::read(p).map_err(|e| format!("cannot read JWT public key {}: {e}", p.display()))?;
                let (key, family): (DecodingKey, &[Algorithm]) = if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
                    (
                        k,
                        &[
                            Algorithm::RS256,
                            Algorithm::RS384,
                            Algorithm::RS512,
                            Algorithm::PS256,
                            Algorithm::PS384,
                            Algorithm::PS512,
                        ],
                    )
                } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
                    (k, &[Algorithm::ES256, Algorithm::ES384])
                } else if let Ok(k) = DecodingKey::from_ed_pem(&pem) {
                    (k, &[Algorithm::EdDSA])
                } else {
                    return Err(format!(
                        "JWT public key {} is not a PEM RSA, EC or Ed25519 public key",
                        p.display()
                    ));
                };
                Keys::Single(key, fit(family)?)
            }
            KeySource::JwksFile(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| format!("cannot read JWKS {}: {e}", p.display()))?;
                Keys::ByKid(parse_jwks(&text, &format!("JWKS {}", p.display()), &narrowed)?)
            }
            KeySource::JwksUrl(source) => Keys::Remote(crate::auth::jwks_url::RemoteJwks::handle(source, &narrowed)?),
        };
        Ok(Verifier {
            keys,
            org_path: claim_path(&cfg.organization_claim),
            user_path: claim_path(&cfg.user_claim),
            cfg: cfg.clone(),
        })
    }

    /// Verifies `token` at the current time.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        self.verify_at(token, unix_now())
    }

    /// As [`Verifier::verify`]; with keys from a URL, a token whose `kid`
    /// names no cached key may trigger one refetch of the configured URL
    /// (never one the token names), rate-bounded and with a deadline, after
    /// which verification is tried once more.
    pub async fn verify_fetching(&self, token: &str) -> Result<Identity, AuthError> {
        let first = self.verify(token);
        match (&first, &self.keys) {
            (Err(AuthError::InvalidToken(m)), Keys::Remote(remote)) if m == UNKNOWN_KID => {
                if remote.refetch_for_unknown_kid().await {
                    self.verify(token)
                } else {
                    first
                }
            }
            _ => first,
        }
    }

    /// Verifies `token` as if the time were `now` (seconds since the epoch).
    /// jsonwebtoken checks `exp`/`nbf` against the real clock; this adds the
    /// proxy's own checks (lifetime cap) against `now`.
    pub fn verify_at(&self, token: &str, now: u64) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(invalid("no token was sent as the password"));
        }
        if token.len() > MAX_TOKEN_LEN || token.bytes().filter(|&b| b == b'.').count() != 2 {
            return Err(invalid("the password is not a JWT"));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| invalid("the password is not a well-formed JWT"))?;
        if header.crit.is_some() || header_names_crit(token) {
            return Err(invalid(
                "token header lists critical extensions (\"crit\"), and this proxy implements none",
            ));
        }
        // Held for this verification only: a refresh may swap the set meanwhile.
        let remote_keys;
        let (key, algs) = match &self.keys {
            Keys::Single(k, a) => (k, a),
            Keys::ByKid(map) => by_kid(map, &header)?,
            Keys::Remote(r) => {
                remote_keys = r.keys();
                by_kid(&remote_keys, &header)?
            }
        };
        if !algs.contains(&header.alg) {
            return Err(invalid(format!(
                "token algorithm {:?} is not accepted for this key",
                header.alg
            )));
        }
        let mut v = Validation::new(header.alg);
        v.leeway = self.cfg.leeway_secs;
        v.validate_exp = true;
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        if !self.cfg.issuers.is_empty() {
            v.set_issuer(&self.cfg.issuers);
            required.push("iss");
        }
        if self.cfg.audiences.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.cfg.audiences);
            required.push("aud");
        }
        v.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Value>(token, key, &v).map_err(|e| map_jwt_error(e.kind()))?;
        let claims = data.claims;

        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid("token exp is not a whole number of seconds"))?;
        if exp.saturating_sub(now) > MAX_TOKEN_LIFETIME_SECS {
            return Err(not_allowed(format!(
                "token lifetime exceeds the proxy's limit of {MAX_TOKEN_LIFETIME_SECS} seconds (10 years)"
            )));
        }
        if self.cfg.max_ttl_secs > 0 && exp.saturating_sub(now) > self.cfg.max_ttl_secs {
            return Err(not_allowed(format!(
                "token lifetime exceeds the allowed {} seconds",
                self.cfg.max_ttl_secs
            )));
        }
        let organization_id = match uuid_claim(&claims, &self.org_path, &self.cfg.organization_claim)? {
            Some(id) => id,
            None => {
                return Err(not_allowed(format!(
                    "token has no {:?} claim",
                    self.cfg.organization_claim
                )))
            }
        };
        let user_id = uuid_claim(&claims, &self.user_path, &self.cfg.user_claim)?;
        if user_id.is_none() && self.cfg.require_user {
            return Err(not_allowed(format!("token has no {:?} claim", self.cfg.user_claim)));
        }
        Ok(Identity {
            organization_id,
            user_id,
            expires_at: exp,
        })
    }
}

/// The key the header's `kid` names. `jku`, `x5u` and other key-locating
/// header members are ignored: keys come only from the configuration.
fn by_kid<'a>(
    map: &'a KeyMap,
    header: &jsonwebtoken::Header,
) -> Result<(&'a DecodingKey, &'a Vec<Algorithm>), AuthError> {
    let kid = header
        .kid
        .as_deref()
        .ok_or_else(|| invalid("token has no kid, and keys are chosen by kid"))?;
    map.get(kid).map(|(k, a)| (k, a)).ok_or_else(|| invalid(UNKNOWN_KID))
}

/// Whether the JOSE header has a `crit` member at all, `null` included
/// (jsonwebtoken reads `"crit": null` as absent). The header decoded once
/// already, so a failure here only means "no".
fn header_names_crit(token: &str) -> bool {
    use base64::Engine;
    let Some(encoded) = token.split('.').next() else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .and_then(|json| serde_json::from_slice::<serde_json::Map<String, Value>>(&json).ok())
        .is_some_and(|h| h.contains_key("crit"))
}

/// The object keys of a dotted claim path (`app_metadata.organization_id`).
fn claim_path(name: &str) -> Vec<String> {
    name.split('.').map(str::to_owned).collect()
}

/// Reads a claim at a dotted path that must be a string holding a non-nil UUID.
fn uuid_claim(claims: &Value, path: &[String], name: &str) -> Result<Option<Uuid>, AuthError> {
    let mut v = claims;
    for part in path {
        match v.get(part) {
            Some(next) => v = next,
            None => return Ok(None),
        }
    }
    if v.is_null() {
        return Ok(None);
    }
    let s = v
        .as_str()
        .ok_or_else(|| not_allowed(format!("claim {name:?} must be a UUID string")))?;
    if s.len() > MAX_CLAIM_LEN {
        return Err(not_allowed(format!("claim {name:?} must be a UUID string")));
    }
    let id = Uuid::parse_str(s).map_err(|_| not_allowed(format!("claim {name:?} must be a UUID string")))?;
    if id.is_nil() {
        return Err(not_allowed(format!("claim {name:?} must not be the nil UUID")));
    }
    Ok(Some(id))
}

fn map_jwt_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => invalid("token has expired"),
        ErrorKind::ImmatureSignature => invalid("token is not valid yet (nbf)"),
        ErrorKind::InvalidSignature => invalid("token signature is not valid"),
        ErrorKind::InvalidAlgorithm => invalid("token algorithm does not match the key"),
        ErrorKind::InvalidIssuer => not_allowed("token issuer is not accepted"),
        ErrorKind::InvalidAudience => not_allowed("token audience is not accepted"),
        ErrorKind::MissingRequiredClaim(c) => invalid(format!("token has no {c:?} claim")),
        ErrorKind::InvalidClaimFormat(c) => invalid(format!("token claim {c:?} has the wrong type")),
        _ => invalid("the password is not a well-formed JWT"),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The claim lookup, for the fuzz targets in `fuzz/`. Not a stable interface.
#[doc(hidden)]
pub mod probe {
    use super::{AuthError, Uuid, Value};

    /// The UUID at the configured claim path `name` of decoded `claims`, as
    /// [`Verifier`](super::Verifier) reads the organization and user ids.
    pub fn uuid_claim(claims: &Value, name: &str) -> Result<Option<Uuid>, AuthError> {
        super::uuid_claim(claims, &super::claim_path(name), name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;
    use std::io::Write;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";
    const ORG: &str = "11111111-2222-4333-8444-555555555555";

    fn cfg_with(key: KeySource) -> JwtConfig {
        JwtConfig {
            key,
            issuers: vec![],
            audiences: vec![],
            leeway_secs: 0,
            algorithms: vec![],
            organization_claim: "organization_id".into(),
            user_claim: "sub".into(),
            require_user: false,
            max_ttl_secs: 0,
        }
    }

    fn secret_verifier(mutate: impl FnOnce(&mut JwtConfig)) -> (Verifier, tempfile::NamedTempFile) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "{SECRET}").unwrap();
        let mut cfg = cfg_with(KeySource::SecretFile(f.path().into()));
        mutate(&mut cfg);
        (Verifier::new(&cfg).unwrap(), f)
    }

    fn hs(claims: Value, alg: Algorithm) -> String {
        encode(&Header::new(alg), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
    }

    fn exp_in(secs: i64) -> i64 {
        unix_now() as i64 + secs
    }

    #[test]
    fn valid_token_yields_canonical_identity() {
        let (v, _f) = secret_verifier(|_| {});
        let upper = ORG.to_uppercase();
        let t = hs(
            json!({"organization_id": upper, "sub": "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", "exp": exp_in(60)}),
            Algorithm::HS256,
        );
        let id = v.verify(&t).unwrap();
        assert_eq!(id.organization_id.to_string(), ORG);
        assert_eq!(id.user_id.unwrap().to_string(), "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee");
    }

    #[test]
    fn rejection_table() {
        let (v, _f) = secret_verifier(|_| {});
        let other_key = encode(
            &Header::new(Algorithm::HS256),
            &json!({"organization_id": ORG, "exp": exp_in(60)}),
            &EncodingKey::from_secret(b"another-secret-another-secret-another"),
        )
        .unwrap();
        let cases: Vec<(&str, String, SqlState)> = vec![
            (
                "expired",
                hs(json!({"organization_id": ORG, "exp": exp_in(-120)}), Algorithm::HS256),
                SqlState::InvalidPassword,
            ),
            (
                "no exp",
                hs(json!({"organization_id": ORG}), Algorithm::HS256),
                SqlState::InvalidPassword,
            ),
            (
                "string exp",
                hs(json!({"organization_id": ORG, "exp": "9999999999"}), Algorithm::HS256),
                SqlState::InvalidPassword,
            ),
            (
                "nbf future",
                hs(
                    json!({"organization_id": ORG, "exp": exp_in(600), "nbf": exp_in(300)}),
                    Algorithm::HS256,
                ),
                SqlState::InvalidPassword,
            ),
            ("wrong key", other_key, SqlState::InvalidPassword),
            ("garbage", "not-a-token".into(), SqlState::InvalidPassword),
            ("empty", String::new(), SqlState::InvalidPassword),
            (
                "no org",
                hs(json!({"exp": exp_in(60)}), Algorithm::HS256),
                SqlState::InvalidAuthorization,
            ),
            (
                "nil org",
                hs(
                    json!({"organization_id": Uuid::nil().to_string(), "exp": exp_in(60)}),
                    Algorithm::HS256,
                ),
                SqlState::InvalidAuthorization,
            ),
            (
                "numeric org",
                hs(json!({"organization_id": 42, "exp": exp_in(60)}), Algorithm::HS256),
                SqlState::InvalidAuthorization,
            ),
            (
                "sql in org",
                hs(
                    json!({"organization_id": "x'; SET ROLE postgres; --", "exp": exp_in(60)}),
                    Algorithm::HS256,
                ),
                SqlState::InvalidAuthorization,
            ),
            (
                "bad sub",
                hs(
                    json!({"organization_id": ORG, "sub": "root", "exp": exp_in(60)}),
                    Algorithm::HS256,
                ),
                SqlState::InvalidAuthorization,
            ),
        ];
        for (name, token, code) in cases {
            let err = v.verify(&token).expect_err(name);
            let ce = err.to_client();
            assert_eq!(ce.code, code, "{name}: {err}");
            assert!(
                !token.is_empty() && !ce.message.contains(&token) || token.is_empty(),
                "{name} echoed the token"
            );
        }
    }

    #[test]
    fn none_algorithm_is_refused() {
        let (v, _f) = secret_verifier(|_| {});
        use base64::Engine;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let t = format!(
            "{}.{}.",
            e.encode(br#"{"alg":"none","typ":"JWT"}"#),
            e.encode(format!(r#"{{"organization_id":"{ORG}","exp":{}}}"#, exp_in(60)))
        );
        assert_eq!(v.verify(&t).unwrap_err().to_client().code, SqlState::InvalidPassword);
    }

    #[test]
    fn nested_claim_path_and_issuer_audience() {
        let (v, _f) = secret_verifier(|c| {
            c.organization_claim = "app_metadata.organization_id".into();
            c.issuers = vec!["https://auth.example".into()];
            c.audiences = vec!["pg".into()];
        });
        let good = hs(
            json!({"app_metadata": {"organization_id": ORG}, "iss": "https://auth.example", "aud": "pg", "exp": exp_in(60)}),
            Algorithm::HS384,
        );
        assert_eq!(v.verify(&good).unwrap().organization_id.to_string(), ORG);
        let wrong_iss = hs(
            json!({"app_metadata": {"organization_id": ORG}, "iss": "evil", "aud": "pg", "exp": exp_in(60)}),
            Algorithm::HS256,
        );
        assert_eq!(
            v.verify(&wrong_iss).unwrap_err().to_client().code,
            SqlState::InvalidAuthorization
        );
        let no_aud = hs(
            json!({"app_metadata": {"organization_id": ORG}, "iss": "https://auth.example", "exp": exp_in(60)}),
            Algorithm::HS256,
        );
        assert!(v.verify(&no_aud).is_err());
    }

    #[test]
    fn algorithm_allow_list_narrows_family() {
        let (v, _f) = secret_verifier(|c| c.algorithms = vec!["HS512".into()]);
        let t = hs(json!({"organization_id": ORG, "exp": exp_in(60)}), Algorithm::HS256);
        assert!(v.verify(&t).unwrap_err().to_string().contains("not accepted"));
        assert!(v
            .verify(&hs(
                json!({"organization_id": ORG, "exp": exp_in(60)}),
                Algorithm::HS512
            ))
            .is_ok());
    }

    #[test]
    fn short_secret_is_refused_at_start() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        write!(f, "short").unwrap();
        assert!(Verifier::new(&cfg_with(KeySource::SecretFile(f.path().into())))
            .unwrap_err()
            .contains("at least 32"));
    }

    /// A token signed with [`SECRET`] whose header is exactly `header_json`.
    fn hs256_with_header(header_json: &str, claims: Value) -> String {
        use base64::Engine;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let message = format!("{}.{}", e.encode(header_json), e.encode(claims.to_string()));
        let sig = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{message}.{sig}")
    }

    #[test]
    fn crit_header_is_refused_even_when_validly_signed() {
        let (v, _f) = secret_verifier(|_| {});
        let claims = json!({"organization_id": ORG, "exp": exp_in(60)});
        // The same header without crit verifies, so only crit decides.
        assert!(v
            .verify(&hs256_with_header(r#"{"alg":"HS256","typ":"JWT"}"#, claims.clone()))
            .is_ok());
        for header in [
            r#"{"alg":"HS256","crit":["exp-ext"],"exp-ext":true}"#,
            r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
            r#"{"alg":"HS256","crit":[]}"#,
            r#"{"alg":"HS256","crit":null}"#,
            r#"{"alg":"HS256","crit":["x"],"x":1}"#,
        ] {
            let err = v.verify(&hs256_with_header(header, claims.clone())).unwrap_err();
            assert_eq!(
                err,
                AuthError::InvalidToken(
                    "token header lists critical extensions (\"crit\"), and this proxy implements none".into()
                ),
                "{header}"
            );
            assert_eq!(err.to_client().code, SqlState::InvalidPassword, "{header}");
        }
        let mut h = Header::new(Algorithm::HS256);
        h.crit = Some(vec!["http://example.com/ext".into()]);
        let t = encode(&h, &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
        assert_eq!(v.verify(&t).unwrap_err().to_client().code, SqlState::InvalidPassword);
    }

    #[test]
    fn exp_near_u64_max_is_refused_without_overflow() {
        let (v, _f) = secret_verifier(|_| {});
        let now = unix_now();
        for exp in [u64::MAX, u64::MAX - 1, 1 << 63, now + MAX_TOKEN_LIFETIME_SECS + 1] {
            let t = hs(json!({"organization_id": ORG, "exp": exp}), Algorithm::HS256);
            let err = v.verify_at(&t, now).unwrap_err();
            assert_eq!(
                err,
                AuthError::NotAllowed(
                    "token lifetime exceeds the proxy's limit of 315360000 seconds (10 years)".into()
                ),
                "exp {exp}"
            );
            assert_eq!(err.to_client().code, SqlState::InvalidAuthorization);
        }
        let t = hs(
            json!({"organization_id": ORG, "exp": now + MAX_TOKEN_LIFETIME_SECS - 60}),
            Algorithm::HS256,
        );
        assert!(v.verify_at(&t, now).is_ok());
        // Past u64: not a whole number of seconds jsonwebtoken can read.
        let t = hs256_with_header(
            r#"{"alg":"HS256"}"#,
            serde_json::from_str(&format!(r#"{{"organization_id":"{ORG}","exp":18446744073709551616}}"#)).unwrap(),
        );
        assert_eq!(v.verify(&t).unwrap_err().to_client().code, SqlState::InvalidPassword);
    }

    #[test]
    fn max_ttl_caps_long_lived_tokens() {
        let (v, _f) = secret_verifier(|c| c.max_ttl_secs = 3600);
        let t = hs(json!({"organization_id": ORG, "exp": exp_in(7200)}), Algorithm::HS256);
        assert_eq!(
            v.verify(&t).unwrap_err().to_client().code,
            SqlState::InvalidAuthorization
        );
    }

    #[test]
    fn public_keys_and_jwks_pin_family_and_kid() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ED25519,
            &rcgen::PKCS_RSA_SHA256,
        ] {
            let kp = rcgen::KeyPair::generate_for(alg).unwrap();
            let mut pubf = tempfile::NamedTempFile::new().unwrap();
            pubf.write_all(kp.public_key_pem().as_bytes()).unwrap();
            let v = Verifier::new(&cfg_with(KeySource::PublicKeyFile(pubf.path().into()))).unwrap();
            let jalg = if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
                Algorithm::ES256
            } else if alg == &rcgen::PKCS_ED25519 {
                Algorithm::EdDSA
            } else {
                Algorithm::RS256
            };
            let pem = kp.serialize_pem();
            let ek = match jalg {
                Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
                Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
                _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            };
            let claims = json!({"organization_id": ORG, "exp": exp_in(60)});
            let t = encode(&Header::new(jalg), &claims, &ek).unwrap();
            assert_eq!(v.verify(&t).unwrap().organization_id.to_string(), ORG, "{jalg:?}");
            // An HMAC token signed with the public key bytes must not pass (key confusion).
            let confused = encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(kp.public_key_pem().as_bytes()),
            )
            .unwrap();
            assert!(v.verify(&confused).is_err(), "{jalg:?} accepted an HS256 token");

            // The same key in a JWKS, chosen by kid.
            let public = kp.public_key_pem();
            let dk = match jalg {
                Algorithm::ES256 => DecodingKey::from_ec_pem(public.as_bytes()).unwrap(),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(public.as_bytes()).unwrap(),
                _ => DecodingKey::from_rsa_pem(public.as_bytes()).unwrap(),
            };
            let mut jwk = jsonwebtoken::jwk::Jwk::from_decoding_key(&dk, Some(jalg)).unwrap();
            jwk.common.key_id = Some("k1".into());
            let mut jwksf = tempfile::NamedTempFile::new().unwrap();
            jwksf
                .write_all(serde_json::to_string(&json!({"keys": [jwk]})).unwrap().as_bytes())
                .unwrap();
            let vj = Verifier::new(&cfg_with(KeySource::JwksFile(jwksf.path().into()))).unwrap();
            let mut h = Header::new(jalg);
            h.kid = Some("k1".into());
            assert!(vj.verify(&encode(&h, &claims, &ek).unwrap()).is_ok());
            h.kid = Some("k2".into());
            assert!(vj
                .verify(&encode(&h, &claims, &ek).unwrap())
                .unwrap_err()
                .to_string()
                .contains("kid"));
            assert!(vj.verify(&t).unwrap_err().to_string().contains("kid"));
        }
    }
}
