//! The PostgreSQL wire protocol, as far as the proxy needs it: framing with
//! hard length caps, the untagged startup-phase packets, and the backend
//! messages the proxy writes itself.
//!
//! Framing never makes policy decisions; it only says where a message starts,
//! how long it is, and whether that length is allowed.

pub mod backend;
pub mod frame;
pub mod startup;

/// Drives the proxy's async readers over bytes in memory, for the hidden
/// `probe` modules the fuzz targets in `fuzz/` use. Not a stable interface.
#[doc(hidden)]
pub mod in_memory {
    use std::collections::VecDeque;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use tokio::io::{AsyncRead, ReadBuf};

    /// A reader that returns one chunk per read (less when the read buffer
    /// has less room, the rest on the next read), then end of file.
    pub struct Chunks<'a> {
        chunks: VecDeque<&'a [u8]>,
        /// Bytes handed out so far.
        pub consumed: usize,
    }

    impl<'a> Chunks<'a> {
        /// The reads, in order; empty chunks are skipped (a read of 0 bytes
        /// would be end of file).
        pub fn new(chunks: &[&'a [u8]]) -> Chunks<'a> {
            Chunks {
                chunks: chunks.iter().copied().filter(|c| !c.is_empty()).collect(),
                consumed: 0,
            }
        }
    }

    impl AsyncRead for Chunks<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if let Some(chunk) = self.chunks.pop_front() {
                let n = chunk.len().min(buf.remaining());
                let (now, later) = chunk.split_at(n);
                buf.put_slice(now);
                if !later.is_empty() {
                    self.chunks.push_front(later);
                }
                self.consumed += n;
            }
            Poll::Ready(Ok(()))
        }
    }

    /// Runs `f` to completion. In-memory I/O never waits, so a future that
    /// is still pending after many polls is a bug and panics.
    pub fn ready<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..1_000_000 {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
        panic!("a future over in-memory I/O never completed");
    }
}
