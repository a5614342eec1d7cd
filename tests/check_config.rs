//! `pg-tenant-proxy check-config`: every setting on its own line with the
//! source of its value (flag, environment variable, file and key, default),
//! the precedence flag > environment > file > default, secrets masked, and
//! invalid values refused with the setting named. Runs the binary with an
//! empty environment plus what each test sets, so the caller's PGTP_*
//! variables do not matter. No database is needed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use pg_tenant_proxy::config::schema::SETTINGS;
use pg_tenant_proxy::context::ContextKey;

const JWT_SECRET: &str = "jwt-secret-marker-0123456789abcdef0123456789";
const CONTEXT_KEY: &str = "context-key-marker-0123456789abcdef01234567";
const FILE_PASSWORD: &str = "file-password-marker-4711";
const ENV_PASSWORD: &str = "env-password-marker-0815";
/// As written in the URL (percent-encoded) and as it is decoded.
const URL_PASSWORD: &str = "url%40password-marker-1234";
const URL_PASSWORD_DECODED: &str = "url@password-marker-1234";

struct Files {
    dir: tempfile::TempDir,
    jwt: PathBuf,
    context_key: PathBuf,
    password: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let jwt = dir.path().join("jwt-secret");
        std::fs::write(&jwt, JWT_SECRET).unwrap();
        let context_key = dir.path().join("context-key");
        std::fs::write(&context_key, format!("{CONTEXT_KEY}\n")).unwrap();
        let password = dir.path().join("upstream-password");
        std::fs::write(&password, format!("{FILE_PASSWORD}\n")).unwrap();
        Files {
            dir,
            jwt,
            context_key,
            password,
        }
    }

    /// Writes `text` as the TOML file and returns its path.
    fn toml(&self, text: &str) -> String {
        let path = self.dir.path().join("proxy.toml");
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// The flags every run needs: token key and context key.
    fn keys(&self) -> Vec<String> {
        vec![
            "--jwt-secret-file".into(),
            self.jwt.to_str().unwrap().into(),
            "--context-key-file".into(),
            self.context_key.to_str().unwrap().into(),
        ]
    }
}

const UPSTREAM: &str = "postgresql://proxy_login@127.0.0.1:5432/app";

/// Runs `check-config ARGS` with only `env` in the environment; returns
/// (exit code, stdout, stderr).
fn check(args: &[String], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pg-tenant-proxy"))
        .arg("check-config")
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Like [`check`], and the run must succeed.
fn check_ok(args: &[String], env: &[(&str, &str)]) -> String {
    let (code, out, err) = check(args, env);
    assert_eq!(code, 0, "{err}");
    out
}

/// The line of setting `key`.
fn line<'a>(out: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key} = ");
    let mut lines = out.lines().filter(|l| l.starts_with(&prefix));
    let found = lines.next().unwrap_or_else(|| panic!("no line for {key}:\n{out}"));
    assert!(lines.next().is_none(), "two lines for {key}:\n{out}");
    found
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn every_setting_is_printed_with_the_source_of_its_value() {
    let f = Files::new();
    let file = f.toml("[limits]\ndrain_timeout_secs = 5\n\n[guard.setting_limits]\nwork_mem = \"8MB\"\n");
    let mut a = args(&["--listen", "127.0.0.1:7000", "--config", &file]);
    a.extend(f.keys());
    let out = check_ok(
        &a,
        &[
            ("PGTP_UPSTREAM", UPSTREAM),
            ("PGTP_JWT_ISSUER", "https://a.example/,https://b.example/"),
        ],
    );
    assert!(
        out.starts_with("configuration is valid: listen 127.0.0.1:7000 -> "),
        "{out}"
    );
    for expected in [
        format!("config = {file}  (flag --config)"),
        "listen = 127.0.0.1:7000  (flag --listen)".to_owned(),
        format!("upstream.url = {UPSTREAM}  (env PGTP_UPSTREAM)"),
        "jwt.issuers = [https://a.example/, https://b.example/]  (env PGTP_JWT_ISSUER)".to_owned(),
        format!("limits.drain_timeout_secs = 5  (file {file}: limits.drain_timeout_secs)"),
        format!("guard.setting_limits = {{work_mem = 8MB}}  (file {file}: guard.setting_limits)"),
        "pool_size = 20  (default)".to_owned(),
        "limits.auth_timeout_secs = 10  (default)".to_owned(),
        "clients.databases = [app]  (default)".to_owned(),
        "admin_listen = (not set)  (default)".to_owned(),
        "upstream.password = (not set)  (default)".to_owned(),
        format!("jwt.secret_file = {}  (flag --jwt-secret-file)", f.jwt.display()),
    ] {
        assert_eq!(line(&out, expected.split(" = ").next().unwrap()), expected);
    }
    // One line per setting, plus the summary.
    for s in SETTINGS {
        line(&out, s.key);
    }
    assert_eq!(out.lines().count(), SETTINGS.len() + 1, "{out}");
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_file_which_beats_the_default() {
    let f = Files::new();
    let file = f.toml("pool_size = 5\n[limits]\ndrain_timeout_secs = 15\n");
    // (setting, flag, variable, file value, default)
    for (key, flag, env, in_file, default) in [
        ("pool_size", "--pool-size", "PGTP_POOL_SIZE", "5", "20"),
        (
            "limits.drain_timeout_secs",
            "--drain-timeout",
            "PGTP_DRAIN_TIMEOUT",
            "15",
            "30",
        ),
    ] {
        let mut base = args(&["--upstream", UPSTREAM]);
        base.extend(f.keys());
        let with_file = || {
            let mut a = base.clone();
            a.extend(args(&["--config", &file]));
            a
        };
        let mut with_flag = with_file();
        with_flag.extend(args(&[flag, "7"]));

        let out = check_ok(&with_flag, &[(env, "6")]);
        assert_eq!(line(&out, key), format!("{key} = 7  (flag {flag})"));
        let out = check_ok(&with_file(), &[(env, "6")]);
        assert_eq!(line(&out, key), format!("{key} = 6  (env {env})"));
        let out = check_ok(&with_file(), &[]);
        assert_eq!(line(&out, key), format!("{key} = {in_file}  (file {file}: {key})"));
        let out = check_ok(&base, &[]);
        assert_eq!(line(&out, key), format!("{key} = {default}  (default)"));
    }
}

#[test]
fn secrets_never_appear_in_the_output() {
    let f = Files::new();
    let url = format!("postgresql://proxy_login:{URL_PASSWORD}@127.0.0.1:5432/app?sslmode=disable");
    let fingerprint = ContextKey::new("7", CONTEXT_KEY.as_bytes())
        .unwrap()
        .fingerprint()
        .to_owned();
    let secrets = [
        URL_PASSWORD,
        URL_PASSWORD_DECODED,
        "password-marker-1234",
        ENV_PASSWORD,
        FILE_PASSWORD,
        JWT_SECRET,
        CONTEXT_KEY,
    ];
    let assert_clean = |out: &str, err: &str| {
        for s in secrets {
            assert!(!out.contains(s), "{s} in stdout:\n{out}");
            assert!(!err.contains(s), "{s} in stderr:\n{err}");
        }
    };

    // The URL and the password file as flags, the password in the environment.
    let mut a = args(&["--upstream", &url, "--context-key-id", "7"]);
    a.extend(args(&["--upstream-password-file", f.password.to_str().unwrap()]));
    a.extend(f.keys());
    let (code, out, err) = check(&a, &[("PGTP_UPSTREAM_PASSWORD", ENV_PASSWORD)]);
    assert_eq!(code, 0, "{err}");
    assert_clean(&out, &err);
    assert_eq!(
        line(&out, "upstream.url"),
        "upstream.url = postgresql://proxy_login:***@127.0.0.1:5432/app?sslmode=disable  (flag --upstream)"
    );
    assert_eq!(
        line(&out, "upstream.password"),
        "upstream.password = ***  (env PGTP_UPSTREAM_PASSWORD)"
    );
    // Secret files by path; the context key by id and fingerprint.
    assert_eq!(
        line(&out, "upstream.password_file"),
        format!(
            "upstream.password_file = {}  (flag --upstream-password-file)",
            f.password.display()
        )
    );
    assert!(line(&out, "context.key_file").contains(f.context_key.to_str().unwrap()));
    assert!(
        out.contains(&format!(
            "context verification on (key id \"7\", fingerprint {fingerprint})"
        )),
        "{out}"
    );

    // The same from the environment and the file.
    let file = f.toml(&format!(
        "[upstream]\npassword_file = \"{}\"\n[jwt]\nsecret_file = \"{}\"\n[context]\nkey_file = \"{}\"\n",
        f.password.display(),
        f.jwt.display(),
        f.context_key.display()
    ));
    let env = [
        ("PGTP_UPSTREAM", url.as_str()),
        ("PGTP_UPSTREAM_PASSWORD", ENV_PASSWORD),
        ("PGTP_CONFIG", file.as_str()),
    ];
    let (code, out, err) = check(&[], &env);
    assert_eq!(code, 0, "{err}");
    assert_clean(&out, &err);
    assert!(line(&out, "upstream.url").contains(":***@"), "{out}");
    assert_eq!(
        line(&out, "jwt.secret_file"),
        format!("jwt.secret_file = {}  (file {file}: jwt.secret_file)", f.jwt.display())
    );

    // Nor when the configuration is refused.
    let (code, out, err) = check(&args(&["--pool-size", "0"]), &env);
    assert_eq!(code, 2);
    assert_clean(&out, &err);
}

#[test]
fn an_invalid_value_exits_non_zero_naming_the_setting() {
    let f = Files::new();
    let mut base = args(&["--upstream", UPSTREAM]);
    base.extend(f.keys());
    let with = |extra: &[&str]| {
        let mut a = base.clone();
        a.extend(args(extra));
        a
    };
    let bad_type = f.toml("[limits]\ndrain_timeout_secs = \"soon\"\n");
    for (a, env, message) in [
        (
            with(&["--pool-size", "0"]),
            vec![],
            "pg-tenant-proxy: invalid configuration: pool_size must be between 1 and 10000, not 0".to_owned(),
        ),
        (
            with(&[]),
            vec![("PGTP_POOL_MODE", "statement")],
            "invalid configuration: pool_mode must be \"session\" or \"transaction\", not \"statement\"".to_owned(),
        ),
        (
            with(&["--jwt-leeway", "301"]),
            vec![],
            "invalid configuration: jwt leeway above 300 seconds is not allowed".to_owned(),
        ),
        (
            with(&["--config", &bad_type]),
            vec![],
            format!(
                "invalid configuration: config file {bad_type}: limits.drain_timeout_secs: expected a whole number, \
                 found a string"
            ),
        ),
        (
            with(&[]),
            vec![("PGTP_DRAIN_TIMEOUT", "soon")],
            "invalid value 'soon' for '--drain-timeout <SECONDS>'".to_owned(),
        ),
    ] {
        let (code, out, err) = check(&a, &env);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(&message), "expected {message:?} in:\n{err}");
        assert!(out.is_empty(), "{out}");
    }
    let unknown = f.toml("[limits]\ndrain_timeout = 5\n");
    let (code, _, err) = check(&with(&["--config", &unknown]), &[]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown key `limits.drain_timeout`"), "{err}");
}
