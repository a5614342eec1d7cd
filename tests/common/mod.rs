//! Test harness: a throwaway PostgreSQL 15 cluster per test binary (started
//! through `tests/support/pg.sh`, stopped by a watchdog when the test process
//! exits), the shipped `sql/` applied, two seeded tenants, and a real
//! `pg-tenant-proxy` process per test on a free port.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod wire;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

/// Tenant A's organization.
pub const ORG_A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
/// Tenant B's organization.
pub const ORG_B: &str = "bbbbbbbb-0000-4000-8000-000000000002";
/// A user of tenant A.
pub const USER_A: &str = "aaaaaaaa-1111-4111-8111-000000000001";
/// A user of tenant B.
pub const USER_B: &str = "bbbbbbbb-1111-4111-8111-000000000002";
/// The login role's password.
pub const LOGIN_PASSWORD: &str = "proxy-login-test-password";
/// HMAC secret the test proxies verify with.
pub const SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";
/// The context key (id 1) installed in the test database and given to every
/// test proxy, so context verification is on as shipped.
pub const CONTEXT_KEY: &str = "test-context-key-0123456789abcdef0123456789";

/// The shared cluster of this test binary.
pub struct Pg {
    /// Cluster directory.
    pub dir: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Superuser password.
    pub super_password: String,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn sh(script: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(repo())
        .stderr(Stdio::inherit())
        .output()
        .expect("bash");
    assert!(out.status.success(), "script failed: {script}");
    String::from_utf8(out.stdout).unwrap()
}

/// Starts (once per test binary) the cluster with `sql/` applied and seed rows.
pub fn pg() -> &'static Pg {
    static PG: OnceLock<Pg> = OnceLock::new();
    PG.get_or_init(|| {
        let out = sh("set -e; source tests/support/pg.sh; pg_start >&2; echo \"$PG_DIR $PG_PORT $PG_SUPER_PASSWORD\"");
        let mut it = out.split_whitespace();
        let dir = PathBuf::from(it.next().unwrap());
        let port: u16 = it.next().unwrap().parse().unwrap();
        let super_password = it.next().unwrap().to_owned();
        // Watchdog: stop and delete the cluster when this test process exits.
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; source tests/support/pg.sh; PG_DIR={dir}; pg_stop",
            pid = std::process::id(),
            dir = dir.display()
        );
        // Deliberately not waited for: it outlives this process.
        #[allow(clippy::zombie_processes)]
        let _watchdog = Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(repo())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("watchdog");
        let setup = format!(
            r#"set -e; source tests/support/pg.sh; PG_DIR={dir}; PG_PORT={port}; PG_SUPER=postgres
            pg_psql -d postgres -c "CREATE DATABASE app" >/dev/null
            for f in sql/*.sql; do pg_psql -d app -f "$f" >/dev/null; done
            pg_psql -d app >/dev/null <<'SQL'
CREATE ROLE proxy_login LOGIN PASSWORD '{pw}' IN ROLE tenant_app;
SELECT tenant.add_context_key('1', '{ck}');
INSERT INTO organizations (id, name) VALUES ('{a}', 'Tenant A'), ('{b}', 'Tenant B');
INSERT INTO agent_instances (organization_id, agent_id, agent_type, status)
  VALUES ('{a}', 'a-agent-1', 'chat', 'active'), ('{a}', 'a-agent-2', 'chat', 'idle'),
         ('{b}', 'b-agent-1', 'chat', 'active');
SQL"#,
            dir = dir.display(),
            pw = LOGIN_PASSWORD,
            ck = CONTEXT_KEY,
            a = ORG_A,
            b = ORG_B,
        );
        sh(&setup);
        Pg {
            dir,
            port,
            super_password,
        }
    })
}

/// A superuser connection straight to the cluster (for setup and checks).
pub async fn superuser(db: &str) -> Client {
    let pg = pg();
    let (c, conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(pg.port)
        .user("postgres")
        .password(&pg.super_password)
        .dbname(db)
        .connect(NoTls)
        .await
        .expect("superuser connect");
    tokio::spawn(conn);
    c
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running proxy process.
pub struct Proxy {
    /// Its client port.
    pub port: u16,
    child: Child,
    /// Its secret file.
    pub secret_file: PathBuf,
    /// Its context key file (holding [`CONTEXT_KEY`], with a trailing newline).
    pub context_key_file: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    _tmp: tempfile::TempDir,
}

/// Path of the proxy binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pg-tenant-proxy")
}

impl Proxy {
    /// Starts a proxy in front of the test cluster. `extra` adds flags; the
    /// context key flag is added unless `extra` has a `--context-` flag.
    pub async fn start(extra: &[&str]) -> Proxy {
        let upstream = format!("postgresql://proxy_login@127.0.0.1:{}/app?sslmode=disable", pg().port);
        Self::start_with_upstream(&upstream, extra).await
    }

    /// Starts a proxy with the given upstream URL (HMAC secret for tokens).
    pub async fn start_with_upstream(upstream: &str, extra: &[&str]) -> Proxy {
        Self::spawn(upstream, extra, true).await
    }

    /// Starts a proxy whose token key comes from `extra` (no HMAC secret flag).
    pub async fn start_with_upstream_keys(upstream: &str, extra: &[&str]) -> Proxy {
        Self::spawn(upstream, extra, false).await
    }

    async fn spawn(upstream: &str, extra: &[&str], with_secret: bool) -> Proxy {
        let tmp = tempfile::tempdir().unwrap();
        let secret_file = tmp.path().join("secret");
        std::fs::write(&secret_file, SECRET).unwrap();
        let context_key_file = tmp.path().join("context.key");
        std::fs::write(&context_key_file, format!("{CONTEXT_KEY}\n")).unwrap();
        let port = free_port();
        let log = tmp.path().join("proxy.log");
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}"), "--upstream", upstream]);
        if with_secret {
            cmd.arg("--jwt-secret-file").arg(&secret_file);
        }
        if !extra.iter().any(|a| a.starts_with("--context-")) {
            cmd.arg("--context-key-file").arg(&context_key_file);
        }
        let child = cmd
            .args(extra)
            .env("PGTP_UPSTREAM_PASSWORD", LOGIN_PASSWORD)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start proxy");
        let p = Proxy {
            port,
            child,
            secret_file,
            context_key_file,
            log,
            _tmp: tmp,
        };
        p.wait_ready().await;
        p
    }

    /// Waits for the "ready" log line, which follows the listener's bind.
    /// No probe connection: one would hold a connection slot until the proxy
    /// sees it close, and a test of `--max-connections` would race it.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.log_text().contains("pg-tenant-proxy ready") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("proxy did not start:\n{}", self.log_text());
    }

    /// What the proxy logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A token for `org`/`sub` valid for `ttl` seconds.
    pub fn token(&self, org: &str, sub: Option<&str>, ttl: u64) -> String {
        let mut cmd = Command::new(bin());
        cmd.arg("token").arg("--jwt-secret-file").arg(&self.secret_file).args([
            "--org",
            org,
            "--ttl",
            &ttl.to_string(),
        ]);
        if let Some(s) = sub {
            cmd.args(["--sub", s]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// tokio-postgres config for this proxy with `password`.
    pub fn config(&self, password: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(self.port)
            .user("app")
            .dbname("app")
            .password(password)
            .connect_timeout(Duration::from_secs(10));
        c
    }

    /// Connects with `password`; the connection task is spawned.
    pub async fn try_connect(&self, password: &str) -> Result<Client, tokio_postgres::Error> {
        let (c, conn) = self.config(password).connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(c)
    }

    /// Connects as tenant `org` (user `sub`).
    pub async fn connect(&self, org: &str, sub: &str) -> Client {
        let t = self.token(org, Some(sub), 600);
        self.try_connect(&t).await.expect("connect through proxy")
    }

    /// Sends SIGHUP (reload) and waits until the log shows its outcome:
    /// `true` for "configuration reloaded", `false` for a refused reload.
    pub async fn reload(&self) -> bool {
        let count = |log: &str, what: &str| log.matches(what).count();
        let before = self.log_text();
        let (ok0, bad0) = (
            count(&before, "configuration reloaded"),
            count(&before, "configuration reload refused"),
        );
        let _ = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let log = self.log_text();
            if count(&log, "configuration reloaded") > ok0 {
                return true;
            }
            if count(&log, "configuration reload refused") > bad0 {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no reload outcome logged:\n{}", self.log_text());
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SQLSTATE of a database error (panics on other errors, with the message).
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.code().code().to_owned(),
        None => panic!("not a database error: {e:?}"),
    }
}

/// Message of a database error.
pub fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string())
}
