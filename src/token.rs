//! `pg-tenant-proxy token`: mints a signed token for demos, psql and tests.
//! HS256 from a secret file, or RS256/ES256/EdDSA (and the rest of each
//! family) from a PEM private key.

use std::path::PathBuf;
use std::str::FromStr;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Flags of `token`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// HMAC secret file (signs HS256 unless --alg says otherwise).
    #[arg(
        long,
        env = "PGTP_JWT_SECRET_FILE",
        value_name = "FILE",
        conflicts_with = "private_key_file"
    )]
    pub jwt_secret_file: Option<PathBuf>,
    /// PEM private key (RSA, EC P-256/P-384 or Ed25519); signs RS256/ES256/EdDSA unless --alg says otherwise.
    #[arg(long, value_name = "PEM")]
    pub private_key_file: Option<PathBuf>,
    /// Signing algorithm (HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA).
    #[arg(long, value_name = "ALG")]
    pub alg: Option<String>,
    /// Organization UUID (the tenant).
    #[arg(long, value_name = "UUID")]
    pub org: Uuid,
    /// User UUID (the `sub` claim, or --user-claim).
    #[arg(long, value_name = "UUID")]
    pub sub: Option<Uuid>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub ttl: u64,
    /// Key id to put in the header (for JWKS).
    #[arg(long, value_name = "KID")]
    pub kid: Option<String>,
    /// `iss` claim.
    #[arg(long, value_name = "ISS")]
    pub iss: Option<String>,
    /// `aud` claim.
    #[arg(long, value_name = "AUD")]
    pub aud: Option<String>,
    /// Claim path for the organization [default: organization_id].
    #[arg(long, env = "PGTP_ORG_CLAIM", default_value = "organization_id", value_name = "PATH")]
    pub org_claim: String,
    /// Claim path for the user [default: sub].
    #[arg(long, env = "PGTP_USER_CLAIM", default_value = "sub", value_name = "PATH")]
    pub user_claim: String,
}

fn set_path(claims: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap_or(path);
    let mut cur = claims;
    for p in parts {
        let entry = cur.entry(p.to_owned()).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else { return };
        cur = next;
    }
    cur.insert(last.to_owned(), value);
}

/// Builds and signs the token.
pub fn mint(args: &TokenArgs) -> Result<String, String> {
    let (key, default_alg) = match (&args.jwt_secret_file, &args.private_key_file) {
        (Some(p), None) => {
            let secret = crate::config::read_secret(p, "JWT secret file")?;
            (EncodingKey::from_secret(secret.as_bytes()), Algorithm::HS256)
        }
        (None, Some(p)) => {
            let pem = std::fs::read(p).map_err(|e| format!("cannot read private key {}: {e}", p.display()))?;
            if let Ok(k) = EncodingKey::from_rsa_pem(&pem) {
                (k, Algorithm::RS256)
            } else if let Ok(k) = EncodingKey::from_ec_pem(&pem) {
                (k, Algorithm::ES256)
            } else if let Ok(k) = EncodingKey::from_ed_pem(&pem) {
                (k, Algorithm::EdDSA)
            } else {
                return Err(format!("{} is not a PEM RSA, EC or Ed25519 private key", p.display()));
            }
        }
        _ => return Err("give --jwt-secret-file or --private-key-file".into()),
    };
    let alg = match &args.alg {
        Some(a) => Algorithm::from_str(a).map_err(|_| format!("unknown algorithm {a:?}"))?,
        None => default_alg,
    };
    let now = crate::auth::jwt::unix_now();
    let mut claims = Map::new();
    claims.insert("iat".into(), now.into());
    if args.ttl > crate::auth::jwt::MAX_TOKEN_LIFETIME_SECS {
        return Err(format!(
            "--ttl {} exceeds the {} seconds (10 years) the proxy accepts",
            args.ttl,
            crate::auth::jwt::MAX_TOKEN_LIFETIME_SECS
        ));
    }
    claims.insert("exp".into(), now.saturating_add(args.ttl).into());
    set_path(&mut claims, &args.org_claim, args.org.hyphenated().to_string().into());
    if let Some(sub) = args.sub {
        set_path(&mut claims, &args.user_claim, sub.hyphenated().to_string().into());
    }
    if let Some(iss) = &args.iss {
        claims.insert("iss".into(), iss.clone().into());
    }
    if let Some(aud) = &args.aud {
        claims.insert("aud".into(), aud.clone().into());
    }
    let mut header = Header::new(alg);
    header.kid = args.kid.clone();
    jsonwebtoken::encode(&header, &Value::Object(claims), &key).map_err(|e| format!("cannot sign: {e}"))
}
