//! `pg-tenant-proxy audit`: runs the database posture check shipped in `sql/`
//! (`tenant.audit()`, from `sql/50_audit.sql`) and prints its findings,
//! grouped by severity, as text or JSON.
//!
//! Exit status, so that the command can gate a deploy:
//! - 0: the check ran and found nothing;
//! - 1: the check ran and found at least one problem;
//! - 2: usage, connection or query error (the message says which).
//!
//! The database comes from `--database-url` (or `PGTP_AUDIT_DATABASE_URL`),
//! parsed by the same code as the proxy's `--upstream` URL, or else from the
//! libpq variables `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`,
//! `PGSSLMODE` and `PGSSLROOTCERT`. TLS uses the proxy's own rustls setup for
//! each `sslmode` ([`pg_tenant_proxy::tls::upstream_config`]). The password is
//! never printed: messages name the host, port, database and role only.
//!
//! The role must be allowed to execute `tenant.audit()`: a superuser or a
//! member of `tenant_owner` (the function is revoked from PUBLIC).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use pg_tenant_proxy::config::{SslMode, UpstreamAddr, UpstreamConfig};
use pg_tenant_proxy::logging::escaped;

/// Output format of `audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable report grouped by severity.
    Text,
    /// One JSON object: database, counts per severity and the findings.
    Json,
}

/// Flags of `audit`.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// Database to check: postgresql://ROLE[:PASSWORD]@HOST[:PORT]/DB[?sslmode=..&sslrootcert=..].
    /// Without it, the libpq variables PGHOST, PGPORT, PGUSER, PGPASSWORD,
    /// PGDATABASE, PGSSLMODE and PGSSLROOTCERT are used.
    #[arg(long, env = "PGTP_AUDIT_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Seconds allowed for connecting and running the check.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub timeout: u64,
}

/// One row of `tenant.audit()`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// `critical` or `warning`.
    pub severity: String,
    /// The check that fired.
    pub check_name: String,
    /// The object it names.
    pub object_name: String,
    /// What is wrong and how to fix it.
    pub detail: String,
}

/// Runs the command and returns its exit status.
pub fn run(args: &AuditArgs) -> ExitCode {
    let up = match target(args.database_url.as_deref(), &|k| std::env::var(k).ok()) {
        Ok(up) => up,
        Err(e) => return fail(&e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let timeout = Duration::from_secs(args.timeout.max(1));
    let findings = match rt.block_on(async { tokio::time::timeout(timeout, fetch(&up, timeout)).await }) {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return fail(&e),
        Err(_) => {
            return fail(&format!(
                "{} did not answer within {} s",
                describe(&up),
                timeout.as_secs()
            ))
        }
    };
    let out = match args.format {
        Format::Text => render_text(&up, &findings),
        Format::Json => render_json(&up, &findings),
    };
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()).is_err() {
        return ExitCode::from(2);
    }
    if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("pg-tenant-proxy audit: {msg}");
    ExitCode::from(2)
}

/// The database to check: the URL, or else the libpq environment (`env`).
fn target(url: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<UpstreamConfig, String> {
    let up = match url {
        Some(url) => UpstreamConfig::from_url(url).map_err(|e| e.replace("upstream URL", "database URL"))?,
        None => from_libpq_env(env)?,
    };
    if up.require_auth != Default::default() {
        return Err("require_auth is not supported by audit; remove it from the database URL".into());
    }
    Ok(up)
}

/// Builds the target from PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE,
/// PGSSLMODE and PGSSLROOTCERT, with libpq's defaults for the last three
/// (user from `USER`, database named after the user, `sslmode=prefer`).
/// At least PGHOST or PGDATABASE must be set, so that a bare `audit` fails
/// with a usage message instead of guessing a server.
fn from_libpq_env(env: &dyn Fn(&str) -> Option<String>) -> Result<UpstreamConfig, String> {
    let get = |k: &str| env(k).filter(|v| !v.is_empty());
    if get("PGHOST").is_none() && get("PGDATABASE").is_none() {
        return Err("no database: give --database-url postgresql://ROLE@HOST:PORT/DB \
                    (or PGTP_AUDIT_DATABASE_URL, or the libpq variables PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE)"
            .into());
    }
    let host = get("PGHOST").unwrap_or_else(|| "localhost".into());
    let port: u16 = match get("PGPORT") {
        Some(p) => p.parse().map_err(|_| format!("PGPORT {p:?} is not a port number"))?,
        None => 5432,
    };
    let user = get("PGUSER")
        .or_else(|| get("USER"))
        .ok_or("no role: set PGUSER or use --database-url")?;
    let database = get("PGDATABASE").unwrap_or_else(|| user.clone());
    let sslmode = match get("PGSSLMODE").as_deref() {
        None | Some("allow" | "prefer") => SslMode::Prefer,
        Some("disable") => SslMode::Disable,
        Some("require") => SslMode::Require,
        Some("verify-ca") => SslMode::VerifyCa,
        Some("verify-full") => SslMode::VerifyFull,
        Some(other) => return Err(format!("PGSSLMODE {other:?} is not a libpq sslmode")),
    };
    let addr = if host.starts_with('/') {
        if matches!(sslmode, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull) {
            return Err("PGSSLMODE require/verify-* cannot be used with a Unix socket".into());
        }
        UpstreamAddr::Unix(std::path::Path::new(&host).join(format!(".s.PGSQL.{port}")))
    } else {
        UpstreamAddr::Tcp { host, port }
    };
    Ok(UpstreamConfig {
        addr,
        user,
        password: get("PGPASSWORD"),
        database,
        sslmode,
        sslrootcert: get("PGSSLROOTCERT").map(Into::into),
        require_auth: Default::default(),
    })
}

/// "database DB at HOST:PORT as ROLE", for messages (never the password).
fn describe(up: &UpstreamConfig) -> String {
    format!(
        "database {} at {} as {}",
        escaped(&up.database),
        where_(up),
        escaped(&up.user)
    )
}

fn where_(up: &UpstreamConfig) -> String {
    match &up.addr {
        UpstreamAddr::Tcp { host, port } if host.contains(':') => format!("[{}]:{port}", escaped(host)),
        UpstreamAddr::Tcp { host, port } => format!("{}:{port}", escaped(host)),
        UpstreamAddr::Unix(p) => escaped(&p.display().to_string()),
    }
}

/// Connects and runs `tenant.audit()`.
async fn fetch(up: &UpstreamConfig, timeout: Duration) -> Result<Vec<Finding>, String> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.user(&up.user)
        .dbname(&up.database)
        .application_name("pg-tenant-proxy audit")
        .connect_timeout(timeout);
    if let Some(pw) = &up.password {
        cfg.password(pw);
    }
    match &up.addr {
        UpstreamAddr::Tcp { host, port } => {
            cfg.host(host).port(*port);
        }
        UpstreamAddr::Unix(socket) => {
            // UpstreamConfig holds DIR/.s.PGSQL.PORT; tokio-postgres wants DIR and PORT.
            let dir = socket.parent().unwrap_or(socket);
            let port = socket
                .extension()
                .and_then(|p| p.to_str())
                .and_then(|p| p.parse().ok())
                .unwrap_or(5432);
            cfg.host_path(dir).port(port);
        }
    }
    // No TLS over a Unix socket, as libpq (from_url refuses require/verify-* there).
    let tls = match up.addr {
        UpstreamAddr::Unix(_) => None,
        UpstreamAddr::Tcp { .. } => pg_tenant_proxy::tls::upstream_config(up)?,
    };
    let (client, connection) = match tls {
        None => {
            cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (c, conn) = cfg
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| connect_error(up, &e))?;
            (c, tokio::spawn(async move { conn.await.map_err(|e| e.to_string()) }))
        }
        Some(tls) => {
            cfg.ssl_mode(match up.sslmode {
                SslMode::Disable | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
            });
            let connector = tokio_postgres_rustls::MakeRustlsConnect::new((*tls).clone());
            let (c, conn) = cfg.connect(connector).await.map_err(|e| connect_error(up, &e))?;
            (c, tokio::spawn(async move { conn.await.map_err(|e| e.to_string()) }))
        }
    };
    let rows = client
        .query(
            "SELECT severity, check_name, object_name, detail FROM tenant.audit()",
            &[],
        )
        .await
        .map_err(|e| {
            format!(
                "tenant.audit() failed on {}: {}. Is sql/ applied to this database, and is the role a superuser or a member of tenant_owner?",
                describe(up),
                db_error(&e)
            )
        })?;
    drop(client);
    let _ = connection.await;
    rows.iter()
        .map(|r| {
            let text = |i: usize| -> Result<String, String> {
                r.try_get::<_, Option<String>>(i)
                    .map(Option::unwrap_or_default)
                    .map_err(|e| format!("tenant.audit() returned an unexpected row: {e}"))
            };
            Ok(Finding {
                severity: text(0)?,
                check_name: text(1)?,
                object_name: text(2)?,
                detail: text(3)?,
            })
        })
        .collect()
}

fn connect_error(up: &UpstreamConfig, e: &tokio_postgres::Error) -> String {
    format!("cannot connect to {}: {}", describe(up), db_error(e))
}

/// The server's message (with SQLSTATE) when there is one, else the error
/// and its cause (tokio-postgres puts I/O and TLS causes in `source()`).
fn db_error(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", escaped(db.message()), db.code().code());
    }
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    escaped(&msg)
}

/// Severities in report order: critical, warning, then any other by name.
fn grouped(findings: &[Finding]) -> Vec<(&str, Vec<&Finding>)> {
    let mut groups: BTreeMap<(u8, &str), Vec<&Finding>> = BTreeMap::new();
    for f in findings {
        let rank = match f.severity.as_str() {
            "critical" => 0,
            "warning" => 1,
            _ => 2,
        };
        groups.entry((rank, f.severity.as_str())).or_default().push(f);
    }
    groups.into_iter().map(|((_, s), v)| (s, v)).collect()
}

/// "2 critical, 1 warning".
fn counts(findings: &[Finding]) -> String {
    grouped(findings)
        .iter()
        .map(|(s, v)| format!("{} {}", v.len(), escaped(s)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text report. Every value from the database is escaped, so that an
/// object name cannot break the layout or send terminal escapes.
pub fn render_text(up: &UpstreamConfig, findings: &[Finding]) -> String {
    let mut out = format!("tenant.audit() on {}: ", describe(up));
    if findings.is_empty() {
        out.push_str("no findings\n");
        return out;
    }
    let n = findings.len();
    out.push_str(&format!(
        "{n} finding{} ({})\n",
        if n == 1 { "" } else { "s" },
        counts(findings)
    ));
    for (severity, group) in grouped(findings) {
        out.push_str(&format!("\n{} ({}):\n", escaped(severity).to_uppercase(), group.len()));
        for f in group {
            out.push_str(&format!(
                "  - {} {}\n      {}\n",
                escaped(&f.check_name),
                escaped(&f.object_name),
                escaped(&f.detail)
            ));
        }
    }
    out
}

/// The JSON report: `{"database", "host", "user", "counts", "findings"}`.
pub fn render_json(up: &UpstreamConfig, findings: &[Finding]) -> String {
    let counts: BTreeMap<&str, usize> = grouped(findings).into_iter().map(|(s, v)| (s, v.len())).collect();
    let doc = serde_json::json!({
        "database": up.database,
        "host": where_(up),
        "user": up.user,
        "counts": counts,
        "findings": findings,
    });
    format!("{doc}\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn up() -> UpstreamConfig {
        UpstreamConfig::from_url("postgresql://dba:hunter2@db.internal:5433/app?sslmode=disable").unwrap()
    }

    fn f(sev: &str, check: &str, obj: &str, detail: &str) -> Finding {
        Finding {
            severity: sev.into(),
            check_name: check.into(),
            object_name: obj.into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn clean_report_says_no_findings() {
        assert_eq!(
            render_text(&up(), &[]),
            "tenant.audit() on database app at db.internal:5433 as dba: no findings\n"
        );
    }

    #[test]
    fn findings_are_grouped_critical_first_and_escaped() {
        let findings = [
            f(
                "warning",
                "table_not_isolated",
                "public.b",
                "has an organization_id column",
            ),
            f(
                "critical",
                "tenant_privilege",
                "public.a\n\u{1b}[2J",
                "TRUNCATE held by tenant_app",
            ),
            f("notice", "odd", "x", "y"),
        ];
        assert_eq!(
            render_text(&up(), &findings),
            "tenant.audit() on database app at db.internal:5433 as dba: 3 findings (1 critical, 1 warning, 1 notice)\n\
             \nCRITICAL (1):\n  - tenant_privilege public.a\\n\\u{1b}[2J\n      TRUNCATE held by tenant_app\n\
             \nWARNING (1):\n  - table_not_isolated public.b\n      has an organization_id column\n\
             \nNOTICE (1):\n  - odd x\n      y\n"
        );
        let json: serde_json::Value = serde_json::from_str(&render_json(&up(), &findings)).unwrap();
        assert_eq!(
            json["counts"],
            serde_json::json!({"critical": 1, "warning": 1, "notice": 1})
        );
        assert_eq!(json["findings"][1]["object_name"], "public.a\n\u{1b}[2J");
        assert_eq!(json["host"], "db.internal:5433");
        assert!(!render_json(&up(), &findings).contains("hunter2"));
    }

    #[test]
    fn libpq_environment_is_used_without_a_url() {
        let env = |k: &str| -> Option<String> {
            match k {
                "PGHOST" => Some("pg.example".into()),
                "PGPORT" => Some("6543".into()),
                "PGUSER" => Some("dba".into()),
                "PGPASSWORD" => Some("pw".into()),
                "PGSSLMODE" => Some("verify-full".into()),
                _ => None,
            }
        };
        let up = target(None, &env).unwrap();
        assert_eq!(
            up.addr,
            UpstreamAddr::Tcp {
                host: "pg.example".into(),
                port: 6543
            }
        );
        assert_eq!((up.user.as_str(), up.database.as_str()), ("dba", "dba"));
        assert_eq!(up.password.as_deref(), Some("pw"));
        assert_eq!(up.sslmode, SslMode::VerifyFull);
        let socket = |k: &str| {
            (k == "PGHOST")
                .then(|| "/run/postgresql".to_string())
                .or_else(|| (k == "PGUSER").then(|| "postgres".into()))
        };
        assert_eq!(
            target(None, &socket).unwrap().addr,
            UpstreamAddr::Unix("/run/postgresql/.s.PGSQL.5432".into())
        );
    }

    #[test]
    fn usage_errors_name_the_fix_and_never_the_password() {
        let none = |_: &str| None;
        assert!(target(None, &none)
            .unwrap_err()
            .starts_with("no database: give --database-url"));
        let e = target(Some("postgresql://dba:hunter2@h/app?sslmode=bogus"), &none).unwrap_err();
        assert!(e.contains("unknown sslmode") && !e.contains("hunter2"), "{e}");
        let e = target(Some("postgresql://dba:hunter2@h/"), &none).unwrap_err();
        assert_eq!(e, "database URL must name one database: postgresql://ROLE@HOST/DB");
        let e = target(Some("postgresql://dba@h/app?require_auth=scram-sha-256"), &none).unwrap_err();
        assert!(e.starts_with("require_auth is not supported"), "{e}");
    }
}
