//! The hidden `healthcheck` subcommand the image's HEALTHCHECK runs: exit 0
//! on a 2xx answer, 1 on anything else (Docker reserves 2), the reason on
//! stderr. A canned HTTP server stands in for the admin listener.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

/// Serves one connection with `response` and returns the request it read.
fn serve_once(response: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 4096];
        let mut req = Vec::new();
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            req.extend_from_slice(&buf[..n]);
        }
        s.write_all(response.as_bytes()).unwrap();
        String::from_utf8(req).unwrap()
    });
    (port, h)
}

fn healthcheck(url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pg-tenant-proxy"))
        .args(["healthcheck", "--url", url, "--timeout", "5"])
        .output()
        .unwrap()
}

#[test]
fn ok_answer_exits_0() {
    let (port, h) = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n");
    let out = healthcheck(&format!("http://127.0.0.1:{port}/healthz"));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let req = h.join().unwrap();
    assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");
    assert!(
        req.to_ascii_lowercase()
            .contains(&format!("host: 127.0.0.1:{port}\r\n")),
        "{req}"
    );
}

#[test]
fn unavailable_answer_exits_1() {
    let (port, h) = serve_once("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let url = format!("http://127.0.0.1:{port}/readyz");
    let out = healthcheck(&url);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("pg-tenant-proxy healthcheck: {url} answered 503 Service Unavailable\n")
    );
    h.join().unwrap();
}

#[test]
fn nothing_listening_and_bad_urls_exit_1() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let out = healthcheck(&url);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with(&format!("pg-tenant-proxy healthcheck: {url}: cannot connect: ")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = healthcheck("https://127.0.0.1:9187/healthz");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "pg-tenant-proxy healthcheck: https://127.0.0.1:9187/healthz: only http://HOST[:PORT]/PATH URLs are supported\n"
    );
}
