//! `pg-tenant-proxy healthcheck` (hidden): one HTTP GET against the admin
//! listener for the container HEALTHCHECK, so that the slim image needs no
//! curl. Exits 0 on a 2xx answer and 1 otherwise (Docker reserves 2), with
//! the reason on stderr. HTTP is hyper's; only plain `http://` is accepted.

use std::process::ExitCode;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Flags of `healthcheck`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// URL to GET (the admin listener's /healthz or /readyz).
    #[arg(long, default_value = "http://127.0.0.1:9187/healthz", value_name = "URL")]
    pub url: String,
    /// Seconds allowed for the whole request.
    #[arg(long, default_value_t = 3, value_name = "SECONDS")]
    pub timeout: u64,
}

/// Runs the check and returns its exit status.
pub fn run(args: &HealthcheckArgs) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            let limit = Duration::from_secs(args.timeout.max(1));
            rt.block_on(async { tokio::time::timeout(limit, get(&args.url)).await })
                .unwrap_or_else(|_| Err(format!("no answer within {} s", limit.as_secs())))
        });
    match result {
        Ok(status) if status.is_success() => ExitCode::SUCCESS,
        Ok(status) => fail(&format!("{} answered {status}", args.url)),
        Err(e) => fail(&format!("{}: {e}", args.url)),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("pg-tenant-proxy healthcheck: {msg}");
    ExitCode::FAILURE
}

async fn get(url: &str) -> Result<hyper::StatusCode, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let (Some("http"), Some(host), Some(authority)) = (uri.scheme_str(), uri.host(), uri.authority()) else {
        return Err("only http://HOST[:PORT]/PATH URLs are supported".into());
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tokio::net::TcpStream::connect((host, uri.port_u16().unwrap_or(80)))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, authority.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    Ok(sender.send_request(req).await.map_err(|e| e.to_string())?.status())
}
