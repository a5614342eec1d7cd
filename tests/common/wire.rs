//! Raw protocol helpers for tests that must send bytes a driver never would.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Proxy, ORG_A, USER_A};

/// Sends an untagged startup packet with `version` and `params`.
pub async fn raw_startup(s: &mut TcpStream, version: i32, params: &[(&str, &str)]) {
    let mut body = BytesMut::new();
    body.put_i32(version);
    for (k, v) in params {
        body.put_slice(k.as_bytes());
        body.put_u8(0);
        body.put_slice(v.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut pkt = BytesMut::new();
    pkt.put_i32(body.len() as i32 + 4);
    pkt.put_slice(&body);
    s.write_all(&pkt).await.unwrap();
}

/// A tagged message with the body `body` writes.
pub fn msg(tag: u8, body: impl FnOnce(&mut BytesMut)) -> BytesMut {
    let mut b = BytesMut::new();
    body(&mut b);
    let mut out = BytesMut::new();
    out.put_u8(tag);
    out.put_i32(b.len() as i32 + 4);
    out.put_slice(&b);
    out
}

/// A simple-protocol Query message.
pub fn query_msg(sql: &[u8]) -> BytesMut {
    msg(b'Q', |b| {
        b.put_slice(sql);
        b.put_u8(0);
    })
}

/// Reads one tagged message.
pub async fn read_msg<R: AsyncRead + Unpin>(s: &mut R) -> (u8, Vec<u8>) {
    let tag = s.read_u8().await.unwrap();
    let len = s.read_i32().await.unwrap();
    let mut body = vec![0; len as usize - 4];
    s.read_exact(&mut body).await.unwrap();
    (tag, body)
}

/// Reads messages up to and including ReadyForQuery (fails after 10 s).
pub async fn read_until_ready<R: AsyncRead + Unpin>(s: &mut R) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), read_msg(s))
            .await
            .expect("no ReadyForQuery: desynchronised");
        let done = m.0 == b'Z';
        out.push(m);
        if done {
            return out;
        }
    }
}

/// The tags of `msgs`.
pub fn tags(msgs: &[(u8, Vec<u8>)]) -> Vec<u8> {
    msgs.iter().map(|m| m.0).collect()
}

/// The SQLSTATE field of an ErrorResponse body.
pub fn error_code(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .split('\0')
        .find_map(|f| f.strip_prefix('C'))
        .unwrap_or_default()
        .to_owned()
}

/// A raw connection authenticated as tenant A, after its first ReadyForQuery.
pub async fn authenticated_socket(p: &Proxy) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    raw_startup(&mut s, 3 << 16, &[("user", "app"), ("database", "app")]).await;
    assert_eq!(read_msg(&mut s).await.0, b'R');
    let token = p.token(ORG_A, Some(USER_A), 600);
    s.write_all(&msg(b'p', |b| {
        b.put_slice(token.as_bytes());
        b.put_u8(0);
    }))
    .await
    .unwrap();
    read_until_ready(&mut s).await;
    s
}
