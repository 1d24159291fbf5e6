//! Recompressing a record batch into a topic's `compression.type`: the only place the
//! produce path rewrites records.
//!
//! In a v2 batch the records are one byte string, compressed as a whole, so changing
//! the codec needs no record decoding: inflate the records (bounded, as the walk in
//! [`crate::records`] inflates them), deflate them with the target codec and level,
//! then patch the header: the codec bits of the attributes, the batch length and the
//! CRC. Offsets, timestamps, producer id, epoch and sequence are untouched, so
//! idempotence and LogAppendTime work on the result as on any batch.
//!
//! Output framing follows what Kafka's own clients write and read: gzip members, snappy
//! in xerial framing (32 KiB blocks, as snappy-java), lz4 frames with independent
//! 64 KiB blocks (Kafka's Java reader refuses dependent blocks), zstd frames.

use std::io::{Read, Write};

use dlog_core::codec::LZ4_DEFAULT_LEVEL;
use dlog_core::limits::RECORD_BATCH_HEADER_BYTES;
use dlog_core::{Codec, Compression};

use crate::batch::{compute_crc, field, BatchError, BatchHeader, LOG_OVERHEAD_BYTES};
use crate::records::inflater;

/// snappy-java's block size for xerial framing.
const SNAPPY_BLOCK_BYTES: usize = 32 * 1024;

/// `batch` (one batch, its header checked as `header`) with its records stored in
/// `target`. The records may inflate to at most `max_inflated_bytes`. A batch already
/// in the target codec is returned as it is.
pub fn recompress(
    batch: &[u8],
    header: &BatchHeader,
    target: Compression,
    max_inflated_bytes: usize,
) -> Result<Vec<u8>, BatchError> {
    if header.compression_codec() == target.codec.id() {
        return Ok(batch.to_vec());
    }
    let body = batch
        .get(RECORD_BATCH_HEADER_BYTES..)
        .ok_or(BatchError::Truncated { needed: RECORD_BATCH_HEADER_BYTES, available: batch.len() })?;
    let undecodable = |e: std::io::Error| BatchError::Undecodable(format!("codec {}: {e}", header.compression_codec()));
    let inflated: Vec<u8>;
    let records: &[u8] = match header.compression_codec() {
        0 => body,
        codec => {
            let mut reader = inflater(body, codec, max_inflated_bytes)?;
            let mut out = Vec::new();
            reader.read_to_end(&mut out).map_err(undecodable)?;
            if out.len() > max_inflated_bytes {
                return Err(BatchError::Undecodable(format!("the records inflate past {max_inflated_bytes} bytes")));
            }
            inflated = out;
            &inflated
        }
    };
    let deflated =
        deflate(records, target).map_err(|e| BatchError::Undecodable(format!("{}: {e}", target.codec.name())))?;
    let mut out = Vec::with_capacity(RECORD_BATCH_HEADER_BYTES + deflated.len());
    out.extend_from_slice(&batch[..RECORD_BATCH_HEADER_BYTES]);
    out.extend_from_slice(&deflated);
    let attributes = (header.attributes & !0x07) | i16::from(target.codec.id());
    out[field::ATTRIBUTES..field::ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let length = i32::try_from(out.len() - LOG_OVERHEAD_BYTES)
        .map_err(|_| BatchError::InvalidRecords("the recompressed batch is larger than 2 GiB".into()))?;
    out[field::BATCH_LENGTH..field::BATCH_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    let crc = compute_crc(&out);
    out[field::CRC..field::CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// `records` compressed with `target`.
fn deflate(records: &[u8], target: Compression) -> std::io::Result<Vec<u8>> {
    match target.codec {
        Codec::None => Ok(records.to_vec()),
        Codec::Gzip => {
            // Kafka's -1 is java.util.zip's default level, 6.
            let level = if target.level < 0 { 6 } else { target.level.clamp(1, 9) as u32 };
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            e.write_all(records)?;
            e.finish()
        }
        Codec::Snappy => {
            let mut out = Vec::with_capacity(16 + records.len() / 2);
            out.extend_from_slice(crate::records::XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes()); // version
            out.extend_from_slice(&1i32.to_be_bytes()); // minimum compatible version
            let mut encoder = snap::raw::Encoder::new();
            for chunk in records.chunks(SNAPPY_BLOCK_BYTES) {
                let block = encoder.compress_vec(chunk).map_err(std::io::Error::other)?;
                let len = u32::try_from(block.len()).map_err(std::io::Error::other)?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&block);
            }
            Ok(out)
        }
        Codec::Lz4 => {
            // As Kafka's Lz4BlockOutputStream: its default level (9) means LZ4's fast
            // compressor, any other level the high-compression one at that level. (LZ4HC
            // at 9 costs about 16 CPU seconds per GiB here; the fast one a fraction.)
            let level = match target.level.clamp(1, 17) {
                LZ4_DEFAULT_LEVEL => 0,
                other => other as u32,
            };
            let mut e = lz4::EncoderBuilder::new()
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .level(level)
                .build(Vec::new())?;
            e.write_all(records)?;
            let (out, result) = e.finish();
            result.map(|()| out)
        }
        Codec::Zstd => zstd::stream::encode_all(records, target.level.clamp(-131072, 22)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::check_batch;
    use crate::records::{walk_records, RecordMeta};

    const MAX: usize = 64 * 1024 * 1024;

    fn batch(n: usize, codec: Codec) -> Vec<u8> {
        crate::records::tests::encoded_batch(n, codec)
    }

    fn metas(b: &[u8]) -> Vec<RecordMeta> {
        let h = check_batch(b).unwrap();
        let mut out = Vec::new();
        walk_records(b, &h, MAX, |m| {
            out.push(m);
            Ok(())
        })
        .unwrap();
        out
    }

    fn level(codec: Codec) -> i32 {
        match codec {
            Codec::Gzip => -1,
            Codec::Lz4 => LZ4_DEFAULT_LEVEL,
            Codec::Zstd => 3,
            _ => 0,
        }
    }

    #[test]
    fn every_codec_recompresses_into_every_other_and_keeps_the_records() {
        for from in Codec::ALL {
            let original = batch(200, from);
            let want = metas(&original);
            let plain = recompress(
                &original,
                &check_batch(&original).unwrap(),
                Compression { codec: Codec::None, level: 0 },
                MAX,
            )
            .unwrap();
            for to in Codec::ALL {
                let out = recompress(
                    &original,
                    &check_batch(&original).unwrap(),
                    Compression { codec: to, level: level(to) },
                    MAX,
                )
                .unwrap();
                let h = check_batch(&out).unwrap_or_else(|e| panic!("{from:?} -> {to:?}: {e}"));
                assert_eq!(h.compression_codec(), to.id(), "{from:?} -> {to:?}");
                assert_eq!(metas(&out), want, "{from:?} -> {to:?}");
                let back = recompress(&out, &h, Compression { codec: Codec::None, level: 0 }, MAX).unwrap();
                assert_eq!(back, plain, "{from:?} -> {to:?} -> none: the same bytes as {from:?} -> none");
            }
        }
    }

    /// Kafka's writer takes its default lz4 level (9) as LZ4's fast compressor and any
    /// other level as LZ4HC at that level; the bodies are exactly those frames.
    #[test]
    fn lz4_at_kafkas_default_level_is_the_fast_compressor_and_other_levels_high() {
        let original = batch(200, Codec::None);
        let h = check_batch(&original).unwrap();
        let records = &original[RECORD_BATCH_HEADER_BYTES..];
        let frame = |level: u32| {
            let mut e = lz4::EncoderBuilder::new()
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .level(level)
                .build(Vec::new())
                .unwrap();
            e.write_all(records).unwrap();
            e.finish().0
        };
        for (level, lz4_level) in [(LZ4_DEFAULT_LEVEL, 0), (10, 10), (1, 1)] {
            let out = recompress(&original, &h, Compression { codec: Codec::Lz4, level }, MAX).unwrap();
            assert_eq!(out[RECORD_BATCH_HEADER_BYTES..], frame(lz4_level)[..], "compression.lz4.level={level}");
        }
        assert_ne!(frame(0), frame(LZ4_DEFAULT_LEVEL as u32), "the fast and the level-9 frames differ here");
    }

    #[test]
    fn the_header_but_codec_length_and_crc_is_kept() {
        let original = batch(10, Codec::None);
        let h = check_batch(&original).unwrap();
        let out = recompress(&original, &h, Compression { codec: Codec::Zstd, level: 3 }, MAX).unwrap();
        let g = check_batch(&out).unwrap();
        assert_eq!(
            (g.base_offset, g.producer_id, g.producer_epoch, g.base_sequence),
            (h.base_offset, h.producer_id, h.producer_epoch, h.base_sequence)
        );
        assert_eq!(
            (g.base_timestamp, g.max_timestamp, g.record_count),
            (h.base_timestamp, h.max_timestamp, h.record_count)
        );
        assert_eq!(g.attributes & !0x07, h.attributes & !0x07);
    }

    #[test]
    fn a_bomb_is_refused_while_recompressing() {
        let original = batch(2000, Codec::Gzip);
        let h = check_batch(&original).unwrap();
        let e = recompress(&original, &h, Compression { codec: Codec::Lz4, level: 9 }, 1024).unwrap_err();
        assert!(matches!(e, BatchError::Undecodable(_)), "{e}");
    }
}
