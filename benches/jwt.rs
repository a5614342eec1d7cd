//! Criterion benchmark of token verification, the per-connection cost the
//! proxy adds before it opens the upstream session (`-C` workloads).
//!
//! - `verify/HS256`: shared secret.
//! - `verify/RS256`: RSA 2048 public key.
//! - `verify/ES256`: EC P-256 public key.
//!
//! Keys are generated at start with `openssl` into a temporary directory;
//! tokens are minted with the proxy's own `token` code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use criterion::{criterion_group, criterion_main, Criterion};
use pg_tenant_proxy::auth::Verifier;
use pg_tenant_proxy::config::{JwtConfig, KeySource};
use pg_tenant_proxy::token::{mint, TokenArgs};
use std::hint::black_box;

fn openssl(args: &[&str]) {
    let st = Command::new("openssl").args(args).status().expect("openssl");
    assert!(st.success(), "openssl {args:?}");
}

fn config(key: KeySource) -> JwtConfig {
    JwtConfig {
        key,
        issuers: vec![],
        audiences: vec![],
        leeway_secs: 30,
        algorithms: vec![],
        organization_claim: "organization_id".into(),
        user_claim: "sub".into(),
        require_user: false,
        max_ttl_secs: 0,
    }
}

fn token(secret: Option<&Path>, private: Option<&Path>) -> String {
    mint(&TokenArgs {
        jwt_secret_file: secret.map(Path::to_path_buf),
        private_key_file: private.map(Path::to_path_buf),
        alg: None,
        org: uuid::Uuid::from_u128(0x1234),
        sub: Some(uuid::Uuid::from_u128(0x5678)),
        ttl: 3600,
        kid: None,
        iss: None,
        aud: None,
        org_claim: "organization_id".into(),
        user_claim: "sub".into(),
    })
    .expect("mint")
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("secret"), "bench-secret-0123456789abcdef0123456789abcdef").unwrap();
    let s = |x: &Path| x.to_str().unwrap().to_owned();
    openssl(&[
        "genpkey",
        "-quiet",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &s(&p("rsa.pem")),
    ]);
    openssl(&["pkey", "-in", &s(&p("rsa.pem")), "-pubout", "-out", &s(&p("rsa.pub"))]);
    openssl(&[
        "genpkey",
        "-quiet",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &s(&p("ec.pem")),
    ]);
    openssl(&["pkey", "-in", &s(&p("ec.pem")), "-pubout", "-out", &s(&p("ec.pub"))]);

    let cases = [
        (
            "HS256",
            KeySource::SecretFile(p("secret")),
            token(Some(&p("secret")), None),
        ),
        (
            "RS256",
            KeySource::PublicKeyFile(p("rsa.pub")),
            token(None, Some(&p("rsa.pem"))),
        ),
        (
            "ES256",
            KeySource::PublicKeyFile(p("ec.pub")),
            token(None, Some(&p("ec.pem"))),
        ),
    ];
    let mut g = c.benchmark_group("verify");
    for (name, key, tok) in cases {
        let v = Verifier::new(&config(key)).expect("verifier");
        let id = v.verify(&tok).expect("token verifies");
        assert_eq!(id.organization_id, uuid::Uuid::from_u128(0x1234));
        g.bench_function(name, |b| b.iter(|| v.verify(black_box(&tok)).is_ok()));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
