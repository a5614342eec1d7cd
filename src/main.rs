//! Command line: `serve`, `token`, `check-config`, `audit` and the hidden
//! `healthcheck` (for the container image).

mod audit_cmd;
mod healthcheck_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pg_tenant_proxy::config::{Resolved, RuntimeKind, ServeArgs};
use pg_tenant_proxy::context::{ProofArgs, Verification};
use pg_tenant_proxy::server::{PerThread, Sessions, SharedCell};
use pg_tenant_proxy::token::TokenArgs;

/// PostgreSQL wire-protocol sidecar that pins each session's tenant from a JWT.
///
/// Clients connect as to PostgreSQL and send a token as their password. The
/// proxy verifies it, opens the upstream session as one low-privilege role with
/// app.current_organization_id and app.current_user_id pinned from the token,
/// and refuses every statement that would change them.
#[derive(Parser)]
#[command(name = "pg-tenant-proxy", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    ///
    /// Every setting has a flag, an environment variable (PGTP_*) and a key in
    /// the TOML file given by --config: a flag wins over the environment, the
    /// environment over the file, the file over the default. The upstream
    /// password may come from the URL, --upstream-password-file, or
    /// PGTP_UPSTREAM_PASSWORD (environment only).
    Serve(ServeArgs),
    /// Print a signed token for a tenant (for demos, psql and tests).
    ///
    /// Example: PGPASSWORD=$(pg-tenant-proxy token --jwt-secret-file secret --org $ORG --sub $USER)
    Token(TokenArgs),
    /// Print a tenant context proof (for DBAs checking a setup, and tests).
    ///
    /// The proof is what the proxy sends as app.context_proof for a session
    /// whose upstream connection the server sees as --client-addr and
    /// --client-port (inet_client_addr(), inet_client_port()), or --unix.
    ContextProof(ProofArgs),
    /// Validate a configuration (files, keys, certificates, guard) and exit.
    ///
    /// Exits 0 when the configuration is usable and prints a summary, then
    /// every setting as KEY = VALUE  (SOURCE), the source being the flag, the
    /// environment variable, the file and key, or the default; secrets are
    /// masked. Exits non-zero with the reason when it is not usable.
    CheckConfig(ServeArgs),
    /// Run the database posture check (tenant.audit() from sql/) and report.
    ///
    /// Exits 0 when there are no findings, 1 when there are any, and 2 on
    /// usage, connection or query errors.
    Audit(audit_cmd::AuditArgs),
    /// GET the admin listener's /healthz (for the image's HEALTHCHECK; no curl needed).
    #[command(hide = true)]
    Healthcheck(healthcheck_cmd::HealthcheckArgs),
}

/// The validated configuration (key files, certificates and guard settings
/// loaded once to check them) and where each value came from.
fn load(args: &ServeArgs) -> Result<(pg_tenant_proxy::config::Config, Resolved), String> {
    let (cfg, resolved) = args.effective()?;
    pg_tenant_proxy::server::prepare(&cfg)?;
    Ok((cfg, resolved))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Audit(args) => audit_cmd::run(&args),
        Command::Healthcheck(args) => healthcheck_cmd::run(&args),
        Command::Token(args) => match pg_tenant_proxy::token::mint(&args) {
            Ok(t) => {
                println!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pg-tenant-proxy token: {e}");
                ExitCode::from(2)
            }
        },
        Command::ContextProof(args) => match pg_tenant_proxy::context::mint_proof(&args) {
            Ok(p) => {
                println!("{p}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pg-tenant-proxy context-proof: {e}");
                ExitCode::from(2)
            }
        },
        Command::CheckConfig(args) => match load(&args) {
            Ok((cfg, resolved)) => {
                println!(
                    "configuration is valid: listen {} -> upstream {:?} database {:?} as role {:?} (sslmode {:?}); client TLS {}; {}",
                    cfg.listen,
                    cfg.upstream.addr,
                    cfg.upstream.database,
                    cfg.upstream.user,
                    cfg.upstream.sslmode,
                    if cfg.tls.is_some() { "on" } else { "off" },
                    context_summary(&cfg.context)
                );
                for line in resolved.report() {
                    println!("{line}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pg-tenant-proxy: invalid configuration: {e}");
                ExitCode::from(2)
            }
        },
        Command::Serve(args) => {
            let cfg = match load(&args) {
                Ok((c, _)) => c,
                Err(e) => {
                    eprintln!("pg-tenant-proxy: invalid configuration: {e}");
                    return ExitCode::from(2);
                }
            };
            pg_tenant_proxy::logging::init(cfg.log_format);
            let mut rt = match cfg.runtime {
                // Sessions run on their own threads; this one only accepts.
                RuntimeKind::PerThread => tokio::runtime::Builder::new_current_thread(),
                RuntimeKind::Shared => {
                    let mut b = tokio::runtime::Builder::new_multi_thread();
                    if cfg.worker_threads > 0 {
                        b.worker_threads(cfg.worker_threads);
                    }
                    b
                }
            };
            let rt = match rt.enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("pg-tenant-proxy: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(serve(cfg, args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("pg-tenant-proxy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn context_summary(v: &Verification) -> String {
    match v {
        Verification::On(k) => format!(
            "context verification on (key id {:?}, fingerprint {})",
            k.id(),
            k.fingerprint()
        ),
        Verification::Off => "context verification OFF".to_owned(),
    }
}

async fn serve(cfg: pg_tenant_proxy::config::Config, args: ServeArgs) -> Result<(), String> {
    pg_tenant_proxy::auth::jwks_url::start(&cfg.jwt).await?;
    let (shared, close_tx) = pg_tenant_proxy::server::prepare(&cfg)?;
    let shared = SharedCell::new(shared);
    tokio::spawn(reload_on_sighup(args, cfg.clone(), shared.clone()));
    let sessions = match cfg.runtime {
        RuntimeKind::PerThread => {
            let n = match cfg.worker_threads {
                0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                n => n,
            };
            Sessions::PerThread(PerThread::start(n)?)
        }
        RuntimeKind::Shared => Sessions::Shared,
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    if let Some(addr) = cfg.admin_listen {
        let admin = pg_tenant_proxy::admin::bind(addr).await?;
        let ready = std::sync::Arc::new(pg_tenant_proxy::admin::Readiness {
            upstream: cfg.upstream.addr.clone(),
            keys_loaded: std::sync::atomic::AtomicBool::new(true),
        });
        tokio::spawn(pg_tenant_proxy::admin::serve(admin, ready));
    }
    match &cfg.context {
        Verification::On(k) => {
            tracing::info!(
                key_id = k.id(),
                fingerprint = k.fingerprint(),
                "context verification on"
            )
        }
        Verification::Off => tracing::warn!(
            "context verification is OFF: the database trusts app.* settings without a proof \
             (tenant.audit() reports it)"
        ),
    }
    tracing::info!(listen = %cfg.listen, upstream_database = %cfg.upstream.database, upstream_role = %cfg.upstream.user, "pg-tenant-proxy ready");
    pg_tenant_proxy::server::run(
        listener,
        sessions,
        shared,
        close_tx,
        cfg.limits.max_client_connections,
        cfg.limits.drain_timeout,
        shutdown_signal(),
    )
    .await;
    Ok(())
}

/// On SIGHUP: re-reads the configuration file and every key file, and
/// makes the result what new sessions use; open sessions keep theirs. A
/// configuration that does not validate is refused with a log line naming
/// the file and the reason, and the running one stays. Settings fixed at
/// start (listen and admin addresses, runtime, threads, connection cap,
/// drain time, log format) need a restart; a change to one is logged.
async fn reload_on_sighup(
    args: ServeArgs,
    mut running: pg_tenant_proxy::config::Config,
    shared: std::sync::Arc<SharedCell>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; reload needs a restart");
        return;
    };
    while hup.recv().await.is_some() {
        let file = args.config_file().map(|p| p.display().to_string()).unwrap_or_default();
        let cfg = match load(&args) {
            Ok((c, _)) => c,
            Err(e) => {
                tracing::error!(config_file = %file, error = %e, "configuration reload refused; the running configuration stays");
                continue;
            }
        };
        if let Err(e) = pg_tenant_proxy::auth::jwks_url::start(&cfg.jwt).await {
            tracing::error!(config_file = %file, error = %e, "configuration reload refused; the running configuration stays");
            continue;
        }
        match pg_tenant_proxy::server::reload(&cfg, &shared.current()) {
            Ok(next) => {
                for (what, changed) in [
                    ("listen", cfg.listen != running.listen),
                    ("admin_listen", cfg.admin_listen != running.admin_listen),
                    ("runtime", cfg.runtime != running.runtime),
                    ("worker_threads", cfg.worker_threads != running.worker_threads),
                    (
                        "limits.max_client_connections",
                        cfg.limits.max_client_connections != running.limits.max_client_connections,
                    ),
                    (
                        "limits.drain_timeout_secs",
                        cfg.limits.drain_timeout != running.limits.drain_timeout,
                    ),
                    ("log_format", cfg.log_format != running.log_format),
                ] {
                    if changed {
                        tracing::warn!(setting = what, "this setting changes only at restart");
                    }
                }
                shared.replace(next);
                running = cfg;
                tracing::info!(config_file = %file, "configuration reloaded; new sessions use it");
            }
            Err(e) => {
                tracing::error!(config_file = %file, error = %e, "configuration reload refused; the running configuration stays");
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
