//! Tagged message framing (`tag`, `int32 length`, body) over untrusted bytes.
//!
//! Every length read from the wire is checked before anything is allocated
//! for it. "Not enough bytes yet" is [`Header::need`], never an error.

use bytes::{Buf, BytesMut};

/// Size of a tagged message header: one tag byte plus the int32 length.
pub const HEADER_LEN: usize = 5;

/// A tagged message header read from the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The message type byte.
    pub tag: u8,
    /// Whole message size in bytes, including tag and length field.
    pub total: usize,
}

/// Why a header is unacceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The length field is below its own 4 bytes (negative or 0..3).
    BadLength(i32),
    /// The message is larger than the configured cap.
    TooLarge {
        /// Declared total size.
        total: usize,
        /// The cap in force.
        max: usize,
    },
}

/// Reads the header at `buf[at..]`. `Ok(None)` means fewer than 5 bytes are
/// there yet. The declared length is validated against `max_total` (bytes,
/// header included) before the caller buffers anything for it.
#[inline]
pub fn peek_header(buf: &[u8], at: usize, max_total: usize) -> Result<Option<Header>, FrameError> {
    let Some(h) = buf.get(at..at + HEADER_LEN) else {
        return Ok(None);
    };
    let tag = h[0];
    let len = i32::from_be_bytes([h[1], h[2], h[3], h[4]]);
    if len < 4 {
        return Err(FrameError::BadLength(len));
    }
    // `len` is >= 4 here, so the cast cannot lose a sign.
    let total = len as usize + 1;
    if total > max_total {
        return Err(FrameError::TooLarge { total, max: max_total });
    }
    Ok(Some(Header { tag, total }))
}

/// Takes one whole message off the front of `buf` if it is all there.
pub fn split_frame(buf: &mut BytesMut, max_total: usize) -> Result<Option<(u8, BytesMut)>, FrameError> {
    match peek_header(buf, 0, max_total)? {
        Some(h) if buf.len() >= h.total => {
            let mut msg = buf.split_to(h.total);
            msg.advance(HEADER_LEN);
            Ok(Some((h.tag, msg)))
        }
        Some(h) => {
            buf.reserve(h.total - buf.len());
            Ok(None)
        }
        None => Ok(None),
    }
}

/// Reads a NUL-terminated string at the front of `body`, returning it (without
/// the NUL) and the rest. `None` if there is no NUL.
#[inline]
pub fn cstr(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = body.iter().position(|&b| b == 0)?;
    Some((&body[..nul], &body[nul + 1..]))
}

/// Appends a tagged message built by `body` to `out`, filling in the length.
pub fn write_message(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    out.extend_from_slice(&[tag, 0, 0, 0, 0]);
    let start = out.len();
    body(out);
    let len = (out.len() - start + 4) as i32;
    out[start - 4..start].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_length_is_rejected_not_allocated() {
        let buf = [b'Q', 0xff, 0xff, 0xff, 0xf0];
        assert_eq!(peek_header(&buf, 0, 1 << 20), Err(FrameError::BadLength(-16)));
    }

    #[test]
    fn oversized_length_is_rejected_before_buffering() {
        let buf = [b'Q', 0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            peek_header(&buf, 0, 1 << 20),
            Err(FrameError::TooLarge { max: 1_048_576, .. })
        ));
    }

    #[test]
    fn partial_header_and_partial_body_need_more_bytes() {
        assert_eq!(peek_header(&[b'Q', 0, 0], 0, 100), Ok(None));
        let mut buf = BytesMut::from(&[b'Q', 0, 0, 0, 9, b'a'][..]);
        assert_eq!(split_frame(&mut buf, 100), Ok(None));
        buf.extend_from_slice(b"bcd\0");
        let (tag, body) = split_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!((tag, &body[..]), (b'Q', &b"abcd\0"[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn write_message_fills_length() {
        let mut out = BytesMut::new();
        write_message(&mut out, b'Z', |b| b.extend_from_slice(b"I"));
        assert_eq!(&out[..], &[b'Z', 0, 0, 0, 5, b'I']);
    }
}
