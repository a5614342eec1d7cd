//! The upstream login trusts nothing: a fake upstream server (a listener in
//! this test that misbehaves on purpose) sends an oversized message, garbage,
//! nothing at all, AuthenticationOk without a verified SCRAM server-final
//! message, or asks for the password in cleartext or MD5 over a connection
//! that is not loopback. Each case asserts what the client sees through the
//! proxy: one SQLSTATE, one message, one detail; and, where it matters, that
//! the fake server never received the password.
//!
//! "Not loopback" is 127.0.0.2: the proxy counts only 127.0.0.1 and ::1 as
//! loopback (see `upstream_auth`), so the test needs no other interface.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use bytes::{BufMut, BytesMut};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// The message every failed upstream login gives the client.
const MESSAGE: &str = "could not connect to the database server";
const DETAIL_PROTOCOL: &str = "the database server's login exchange failed";
const DETAIL_EXPOSED: &str = "the database server asked for the password in cleartext or MD5 over a connection that is not a Unix socket, loopback or verified TLS";
const DETAIL_NOT_VERIFIED: &str = "the database server did not prove that it knows the login role's password";
const DETAIL_TIMEOUT: &str = "the database server did not answer in time";
const DETAIL_NOT_ALLOWED: &str =
    "the database server asked for an authentication method the proxy is configured to refuse";

/// What the fake server does after reading the proxy's startup packet.
#[derive(Debug, Clone, Copy)]
enum Script {
    /// An AuthenticationRequest declaring a 2 GiB body.
    Oversized,
    /// Bytes that are not a message (a negative length).
    Garbage,
    /// Nothing, ever.
    Silence,
    /// AuthenticationCleartextPassword; then AuthenticationOk if a password came.
    Cleartext,
    /// AuthenticationMD5Password; then AuthenticationOk if a password came.
    Md5,
    /// SASL SCRAM-SHA-256, then AuthenticationOk right after the client-first message.
    ScramOkAfterFirst,
    /// SASL SCRAM-SHA-256 through server-first, then AuthenticationOk without server-final.
    ScramOkWithoutFinal,
    /// SASL SCRAM-SHA-256 with a server-final signature that does not verify.
    ScramBadFinal,
    /// ReadyForQuery with no authentication at all.
    ReadyFirst,
    /// AuthenticationOk straight away (trust).
    Trust,
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn auth(code: i32, rest: &[u8]) -> Vec<u8> {
    let mut b = code.to_be_bytes().to_vec();
    b.extend_from_slice(rest);
    msg(b'R', &b)
}

/// AuthenticationOk, one ParameterStatus, BackendKeyData and ReadyForQuery.
fn login_ok() -> Vec<u8> {
    let mut out = auth(0, &[]);
    out.extend(msg(b'S', b"client_encoding\0UTF8\0"));
    out.extend(msg(b'K', &[0, 0, 0, 7, 0, 0, 0, 9]));
    out.extend(msg(b'Z', b"I"));
    out
}

async fn read_frontend_msg(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let tag = s.read_u8().await.unwrap();
    let len = s.read_i32().await.unwrap();
    let mut body = vec![0; len as usize - 4];
    s.read_exact(&mut body).await.unwrap();
    (tag, body)
}

/// Everything the proxy sends until it closes (at most 10 s).
async fn rest_of(s: &mut TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    rest
}

/// Runs `script` on one connection; returns what the proxy sent after the
/// startup packet, up to its close.
async fn play(mut s: TcpStream, script: Script) -> Vec<u8> {
    let len = s.read_i32().await.unwrap();
    let mut startup = vec![0; len as usize - 4];
    s.read_exact(&mut startup).await.unwrap();
    assert_eq!(&startup[..4], &196_608i32.to_be_bytes(), "protocol 3.0 startup");
    match script {
        Script::Oversized => {
            let mut m = vec![b'R'];
            m.extend_from_slice(&0x7fff_fff0i32.to_be_bytes());
            m.extend_from_slice(&[0; 64]);
            s.write_all(&m).await.unwrap();
            rest_of(&mut s).await
        }
        Script::Garbage => {
            s.write_all(&[0xff; 32]).await.unwrap();
            rest_of(&mut s).await
        }
        Script::Silence => rest_of(&mut s).await,
        Script::Cleartext | Script::Md5 => {
            let req = match script {
                Script::Cleartext => auth(3, &[]),
                _ => auth(5, b"salt"),
            };
            s.write_all(&req).await.unwrap();
            let mut got = Vec::new();
            let mut byte = [0u8; 1];
            // A password message, if one comes, is answered so the login completes.
            if tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut byte))
                .await
                .is_ok_and(|r| r.is_ok())
            {
                let len = s.read_i32().await.unwrap();
                let mut body = vec![0; len as usize - 4];
                s.read_exact(&mut body).await.unwrap();
                got.push(byte[0]);
                got.extend_from_slice(&body);
                s.write_all(&login_ok()).await.unwrap();
                // Hold the session open until the proxy ends it.
                got.extend(rest_of(&mut s).await);
            }
            got
        }
        Script::ScramOkAfterFirst | Script::ScramOkWithoutFinal | Script::ScramBadFinal => {
            s.write_all(&auth(10, b"SCRAM-SHA-256\0\0")).await.unwrap();
            let (tag, first) = read_frontend_msg(&mut s).await;
            assert_eq!(tag, b'p');
            if let Script::ScramOkAfterFirst = script {
                s.write_all(&login_ok()).await.unwrap();
                return rest_of(&mut s).await;
            }
            // SASLInitialResponse: mechanism\0, int32 length, "n,,n=,r=NONCE".
            let text = String::from_utf8_lossy(&first).into_owned();
            let nonce = text.rsplit("r=").next().unwrap().to_owned();
            let salt = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
            let server_first = format!("r={nonce}fakeserver,s={salt},i=4096");
            s.write_all(&auth(11, server_first.as_bytes())).await.unwrap();
            let (tag, _client_final) = read_frontend_msg(&mut s).await;
            assert_eq!(tag, b'p');
            let mut out = Vec::new();
            if let Script::ScramBadFinal = script {
                let v = format!("v={}", base64::engine::general_purpose::STANDARD.encode([0u8; 32]));
                out.extend(auth(12, v.as_bytes()));
            }
            out.extend(login_ok());
            s.write_all(&out).await.unwrap();
            rest_of(&mut s).await
        }
        Script::ReadyFirst => {
            s.write_all(&msg(b'Z', b"I")).await.unwrap();
            rest_of(&mut s).await
        }
        Script::Trust => {
            s.write_all(&login_ok()).await.unwrap();
            rest_of(&mut s).await
        }
    }
}

/// A fake upstream on `ip` that plays `script` on its first connection.
async fn fake_upstream(ip: &str, script: Script) -> (u16, oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let _ = tx.send(play(s, script).await);
    });
    (port, rx)
}

/// A proxy in front of the fake upstream at `ip:port` (URL query `query`).
async fn proxy(ip: &str, port: u16, query: &str, extra: &[&str]) -> Proxy {
    let url = format!("postgresql://proxy_login@{ip}:{port}/app?sslmode=disable{query}");
    Proxy::start_with_upstream(&url, extra).await
}

/// Connects through `p` and asserts the refusal the client sees.
async fn assert_refused(p: &Proxy, detail: &str) {
    let err = p.try_connect(&p.token(ORG_A, Some(USER_A), 60)).await.err().unwrap();
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("not an ErrorResponse: {err:?}"));
    assert_eq!(
        (db.code().code(), db.message(), db.detail()),
        ("08001", MESSAGE, Some(detail)),
        "{}",
        p.log_text()
    );
    assert!(!p.log_text().contains(LOGIN_PASSWORD), "the password was logged");
}

async fn received(rx: oneshot::Receiver<Vec<u8>>) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(15), rx)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn server_declaring_an_oversized_message_is_refused_before_it_is_read() {
    let (port, rx) = fake_upstream("127.0.0.1", Script::Oversized).await;
    let p = proxy("127.0.0.1", port, "", &[]).await;
    assert_refused(&p, DETAIL_PROTOCOL).await;
    assert!(received(rx).await.is_empty());
    assert!(
        p.log_text()
            .contains("the server declared a login message of 2147483633 bytes; at most 1048576 are accepted"),
        "{}",
        p.log_text()
    );
}

#[tokio::test]
async fn server_sending_garbage_is_refused() {
    let (port, rx) = fake_upstream("127.0.0.1", Script::Garbage).await;
    let p = proxy("127.0.0.1", port, "", &[]).await;
    assert_refused(&p, DETAIL_PROTOCOL).await;
    assert!(received(rx).await.is_empty());
}

#[tokio::test]
async fn server_sending_ready_for_query_without_authentication_is_refused() {
    let (port, rx) = fake_upstream("127.0.0.1", Script::ReadyFirst).await;
    let p = proxy("127.0.0.1", port, "", &[]).await;
    assert_refused(&p, DETAIL_PROTOCOL).await;
    assert!(received(rx).await.is_empty());
}

#[tokio::test]
async fn silent_server_is_given_up_on_at_the_connect_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.toml");
    std::fs::write(&cfg, "[limits]\nconnect_timeout_secs = 1\n").unwrap();
    let (port, _rx) = fake_upstream("127.0.0.1", Script::Silence).await;
    let p = proxy("127.0.0.1", port, "", &["--config", cfg.to_str().unwrap()]).await;
    let started = Instant::now();
    assert_refused(&p, DETAIL_TIMEOUT).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test]
async fn cleartext_and_md5_requests_over_a_network_connection_get_no_password() {
    for script in [Script::Cleartext, Script::Md5] {
        let (port, rx) = fake_upstream("127.0.0.2", script).await;
        let p = proxy("127.0.0.2", port, "", &[]).await;
        assert_refused(&p, DETAIL_EXPOSED).await;
        assert_eq!(received(rx).await, b"", "{script:?}: the proxy answered the request");
    }
}

#[tokio::test]
async fn require_auth_lets_the_operator_allow_cleartext_over_the_network() {
    let (port, rx) = fake_upstream("127.0.0.2", Script::Cleartext).await;
    let p = proxy("127.0.0.2", port, "&require_auth=password", &[]).await;
    let c = p.try_connect(&p.token(ORG_A, Some(USER_A), 60)).await.unwrap();
    drop(c);
    let got = received(rx).await;
    let mut expected = vec![b'p'];
    expected.extend_from_slice(LOGIN_PASSWORD.as_bytes());
    expected.push(0);
    assert_eq!(got.get(..expected.len()), Some(&expected[..]));
}

#[tokio::test]
async fn require_auth_refuses_methods_it_does_not_list() {
    // scram-sha-256 only: a cleartext request is refused even over loopback,
    // and so is a server that skips authentication.
    for script in [Script::Cleartext, Script::Trust] {
        let (port, rx) = fake_upstream("127.0.0.1", script).await;
        let p = proxy("127.0.0.1", port, "&require_auth=scram-sha-256", &[]).await;
        assert_refused(&p, DETAIL_NOT_ALLOWED).await;
        assert_eq!(received(rx).await, b"", "{script:?}");
    }
}

#[tokio::test]
async fn authentication_ok_without_a_verified_scram_server_final_is_refused() {
    for script in [
        Script::ScramOkAfterFirst,
        Script::ScramOkWithoutFinal,
        Script::ScramBadFinal,
    ] {
        let (port, rx) = fake_upstream("127.0.0.1", script).await;
        let p = proxy("127.0.0.1", port, "", &[]).await;
        assert_refused(&p, DETAIL_NOT_VERIFIED).await;
        // The proxy closed without sending a query.
        assert_eq!(received(rx).await, b"", "{script:?}");
    }
}

#[tokio::test]
async fn startup_packet_pins_utf8_and_a_server_refusal_is_reported() {
    // The pinned values reach the server as PostgreSQL spells them; a
    // starting server's refusal reaches the client as 08001.
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let p = proxy("127.0.0.1", port, "", &[]).await;
    let token = p.token(ORG_A, Some(USER_A), 60);
    let connect = tokio::spawn(async move {
        let err = p.try_connect(&token).await.err().unwrap();
        let db = err.as_db_error().unwrap();
        (
            db.code().code().to_owned(),
            db.message().to_owned(),
            db.detail().map(str::to_owned),
        )
    });
    let (mut s, _) = listener.accept().await.unwrap();
    let len = s.read_i32().await.unwrap();
    let mut body = BytesMut::zeroed(len as usize - 4);
    s.read_exact(&mut body).await.unwrap();
    let text = String::from_utf8_lossy(&body[4..]).into_owned();
    assert!(text.contains("client_encoding\0UTF8\0"), "{text:?}");
    assert!(text.contains("standard_conforming_strings\0on\0"), "{text:?}");
    let mut bye = BytesMut::new();
    bye.put_slice(&msg(b'E', b"SFATAL\0C57P03\0Mstarting up\0\0"));
    s.write_all(&bye).await.unwrap();
    assert_eq!(
        connect.await.unwrap(),
        (
            "08001".to_owned(),
            MESSAGE.to_owned(),
            Some("the database server is starting up or shutting down".to_owned())
        )
    );
}
