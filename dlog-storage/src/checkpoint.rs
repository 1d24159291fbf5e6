//! Small checkpoint files written atomically: write a temporary file, fsync it, rename
//! it over the old one, fsync the directory. A reader sees the old or the new content,
//! never a mix; a CRC guards against a file damaged some other way.
//!
//! Format: magic `DLCK`, u16 version, u16 payload length, payload, u32 CRC-32C of all
//! the bytes before it. All big-endian.

use crate::error::{Result, StorageError};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;

const MAGIC: &[u8; 4] = b"DLCK";
const VERSION: u16 = 1;
/// Checkpoints are a few dozen bytes; anything larger is not ours.
const PAYLOAD_MAX_BYTES: usize = 1024;

/// Suffix of the temporary files; stray ones (a crash between write and rename) are
/// removed at open.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Atomically replaces `dir/name` with `payload`.
pub(crate) fn write(dir: &Path, name: &str, payload: &[u8]) -> Result<()> {
    replace(dir, name, &encode(payload))
}

/// The file bytes of a checkpoint holding `payload` (at most 1 KiB).
pub fn encode(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= PAYLOAD_MAX_BYTES);
    let mut bytes = Vec::with_capacity(payload.len() + 12);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_be_bytes());
    bytes.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    bytes.extend_from_slice(payload);
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    bytes
}

/// Atomically replaces `dir/name` with `bytes` as they are (the caller frames and
/// checksums them): write a temporary file, fsync, rename, fsync the directory.
pub fn replace(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let dst = dir.join(name);
    let mut f =
        OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| StorageError::io(&tmp, e))?;
    f.sync_all().map_err(|e| StorageError::io(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, &dst).map_err(|e| StorageError::io(&dst, e))?;
    sync_dir(dir)
}

/// The payload of `dir/name`; `None` when missing or damaged (logged: the caller falls
/// back to the safe choice, which is always possible for a checkpoint).
pub(crate) fn read(dir: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(&path, e)),
    };
    let parsed = decode(&bytes).map(<[u8]>::to_vec);
    if parsed.is_none() {
        tracing::warn!(path = %path.display(), "ignoring damaged checkpoint file");
    }
    Ok(parsed)
}

/// The payload of checkpoint file bytes; `None` when they are damaged or not a
/// checkpoint.
pub fn decode(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.len() < 12 || &bytes[..4] != MAGIC {
        return None;
    }
    if u16::from_be_bytes([bytes[4], bytes[5]]) != VERSION {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([bytes[6], bytes[7]]));
    if bytes.len() != 8 + len + 4 {
        return None;
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[8 + len..]);
    if crc32c::crc32c(&bytes[..8 + len]) != u32::from_be_bytes(crc) {
        return None;
    }
    Some(&bytes[8..8 + len])
}

/// Removes `dir/name` if present, and makes the removal durable.
pub(crate) fn remove(dir: &Path, name: &str) -> Result<()> {
    let path = dir.join(name);
    match fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(&path, e)),
    }
}

/// fsync of a directory, so that creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| StorageError::io(dir, e))?;
    d.sync_all().map_err(|e| StorageError::io(dir, e))
}

/// Big-endian field reader over a checkpoint payload; `None` past the end.
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Fields { buf }
    }

    pub(crate) fn i64(&mut self) -> Option<i64> {
        if self.buf.len() < 8 {
            return None;
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.buf[..8]);
        self.buf = &self.buf[8..];
        Some(i64::from_be_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path(), "cp").unwrap(), None);
        write(dir.path(), "cp", b"hello").unwrap();
        assert_eq!(read(dir.path(), "cp").unwrap().as_deref(), Some(&b"hello"[..]));
        write(dir.path(), "cp", b"world!").unwrap();
        assert_eq!(read(dir.path(), "cp").unwrap().as_deref(), Some(&b"world!"[..]));
        let path = dir.path().join("cp");
        let mut bytes = fs::read(&path).unwrap();
        bytes[9] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(read(dir.path(), "cp").unwrap(), None);
        remove(dir.path(), "cp").unwrap();
        remove(dir.path(), "cp").unwrap();
        assert!(!path.exists());
    }
}
