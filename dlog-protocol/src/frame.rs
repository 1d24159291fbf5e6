//! Kafka framing: every request and response is a 4-byte big-endian size followed by
//! that many bytes.

use bytes::{Buf, Bytes, BytesMut};

/// Why a connection's byte stream cannot be framed. Either closes the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds socket.request.max.bytes {max}")]
    TooLarge { size: i64, max: usize },
    #[error("negative frame size {0}")]
    Negative(i32),
}

/// The declared size of the frame at the front of `buf` (without its 4-byte prefix),
/// once those 4 bytes are there. Not checked: [`split_frame`] checks it.
pub fn declared_size(buf: &[u8]) -> Option<usize> {
    let size = i32::from_be_bytes(buf.get(..4)?.try_into().ok()?);
    usize::try_from(size).ok()
}

/// Takes one whole frame (without its size prefix) off the front of `buf`, or returns
/// `None` when more bytes are needed. An oversized or negative size is an error at once,
/// before the body arrives, so a bad client cannot make the broker buffer it.
pub fn split_frame(buf: &mut BytesMut, max_bytes: usize) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 0 {
        return Err(FrameError::Negative(size));
    }
    if size as usize > max_bytes {
        return Err(FrameError::TooLarge { size: size as i64, max: max_bytes });
    }
    if buf.len() < 4 + size as usize {
        // Nothing is reserved from the declared size: the buffer grows as bytes arrive,
        // so a client that declares 100 MiB and sends 10 bytes holds 10 bytes.
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size as usize).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_whole_and_partial() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&3i32.to_be_bytes());
        buf.extend_from_slice(b"ab");
        assert_eq!(split_frame(&mut buf, 100), Ok(None));
        buf.extend_from_slice(b"c");
        buf.extend_from_slice(&1i32.to_be_bytes());
        assert_eq!(split_frame(&mut buf, 100).unwrap().unwrap(), Bytes::from_static(b"abc"));
        assert_eq!(split_frame(&mut buf, 100), Ok(None));
    }

    #[test]
    fn a_declared_size_reserves_nothing() {
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(&(90 * 1024 * 1024i32).to_be_bytes());
        buf.extend_from_slice(b"only ten b");
        assert_eq!(declared_size(&buf), Some(90 * 1024 * 1024));
        assert_eq!(split_frame(&mut buf, 100 * 1024 * 1024), Ok(None));
        assert!(buf.capacity() < 1024, "capacity {} for 14 bytes received", buf.capacity());
    }

    #[test]
    fn oversized_and_negative_frames_are_refused_before_the_body() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(200 * 1024 * 1024i32).to_be_bytes());
        assert!(matches!(split_frame(&mut buf, 100 * 1024 * 1024), Err(FrameError::TooLarge { .. })));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(split_frame(&mut buf, 100), Err(FrameError::Negative(-5)));
    }
}
