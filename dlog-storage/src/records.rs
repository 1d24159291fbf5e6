//! Walking the records inside a RecordBatch v2, as Kafka's LogValidator does: the one
//! place DLog looks past a batch header.
//!
//! A record is `length varint, attributes i8, timestampDelta varlong, offsetDelta
//! varint, key, value, headers`. The walk reads each record's length and its first three
//! fields and skips the rest, so it allocates nothing per record. Compressed batches are
//! inflated as a stream (gzip, snappy in Kafka's xerial framing, lz4 frames, zstd) and
//! never held whole: memory stays at the codec's window, and the bytes inflated are
//! bounded by [`RecordLimits::max_inflated_bytes`], so a compression bomb is refused
//! after at most that much work instead of being expanded.
//!
//! What is checked, for every codec:
//! - the records fill the batch (or the inflated stream) exactly;
//! - they number the header's `recordCount`, with offset deltas 0, 1, 2, ...;
//! - with [`RecordLimits::timestamps`], each record's timestamp (other than -1, "none")
//!   lies in that range (`message.timestamp.before.max.ms` / `after.max.ms`).

use std::io::{BufRead, BufReader, Read};
use std::ops::RangeInclusive;

use dlog_core::limits::RECORD_BATCH_HEADER_BYTES;

use crate::batch::{BatchError, BatchHeader};

/// How much a batch may hold once inflated, and which timestamps its records may carry.
#[derive(Debug, Clone)]
pub struct RecordLimits {
    /// Most bytes the records of one batch may inflate to. Uncompressed batches are
    /// bounded by their own size and ignore it.
    pub max_inflated_bytes: usize,
    /// Accepted record timestamps (CreateTime topics); `None` accepts any.
    pub timestamps: Option<RangeInclusive<i64>>,
}

impl RecordLimits {
    /// How many times `max.message.bytes` the records of a compressed batch may
    /// inflate to. Text and JSON compress 5-10x, runs of zeroes far more; 64x keeps
    /// every ordinary batch and stops a bomb after 64 MiB of work at the default 1 MiB.
    pub const INFLATION_FACTOR: usize = 64;
    /// The floor of the inflation bound, for topics with a tiny `max.message.bytes`.
    pub const MIN_INFLATED_BYTES: usize = 1024 * 1024;

    /// The bound for a topic whose `max.message.bytes` is `max_message_bytes`.
    pub fn for_max_message_bytes(max_message_bytes: u64) -> RecordLimits {
        let scaled = usize::try_from(max_message_bytes).unwrap_or(usize::MAX).saturating_mul(Self::INFLATION_FACTOR);
        RecordLimits { max_inflated_bytes: scaled.max(Self::MIN_INFLATED_BYTES), timestamps: None }
    }

    /// Adds Kafka's timestamp window: `[now - before_max_ms, now + after_max_ms]`.
    pub fn with_timestamp_window(mut self, now_ms: i64, before_max_ms: i64, after_max_ms: i64) -> RecordLimits {
        self.timestamps = Some(now_ms.saturating_sub(before_max_ms)..=now_ms.saturating_add(after_max_ms));
        self
    }
}

/// One record as the walk sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    /// Its offset delta, which the walk has checked equals its index in the batch.
    pub offset_delta: i32,
    /// Its timestamp: the batch's max timestamp under LogAppendTime, else base + delta.
    pub timestamp: i64,
}

/// Checks the records of one batch (`batch` is the whole batch, `header` its parsed,
/// checked header) against `limits`. See the module documentation for what is checked.
pub fn check_records(batch: &[u8], header: &BatchHeader, limits: &RecordLimits) -> Result<(), BatchError> {
    walk_records(batch, header, limits.max_inflated_bytes, |record| {
        if let Some(range) = &limits.timestamps {
            if record.timestamp != -1 && !header.timestamp_type_is_log_append() && !range.contains(&record.timestamp) {
                return Err(BatchError::InvalidTimestamp(format!(
                    "timestamp {} of the record with offset delta {} is out of range: it must be within [{}, {}]",
                    record.timestamp,
                    record.offset_delta,
                    range.start(),
                    range.end()
                )));
            }
        }
        Ok(())
    })
}

/// Walks the records of one batch, calling `each` for every record in order, after
/// checking its framing and offset delta. Stops at the first error, `each`'s included.
/// Compressed records inflate to at most `max_inflated_bytes`.
pub fn walk_records(
    batch: &[u8],
    header: &BatchHeader,
    max_inflated_bytes: usize,
    each: impl FnMut(RecordMeta) -> Result<(), BatchError>,
) -> Result<(), BatchError> {
    let body = batch
        .get(RECORD_BATCH_HEADER_BYTES..)
        .ok_or(BatchError::Truncated { needed: RECORD_BATCH_HEADER_BYTES, available: batch.len() })?;
    let walk = Walk { header, each };
    match header.compression_codec() {
        0 => walk.run(&mut SliceSource { buf: body, pos: 0 }),
        codec => {
            let mut source = StreamSource {
                reader: BufReader::with_capacity(STREAM_BUFFER_BYTES, inflater(body, codec, max_inflated_bytes)?),
                consumed: 0,
                max: max_inflated_bytes,
                codec,
            };
            walk.run(&mut source)
        }
    }
}

/// The records of a batch compressed with `codec` (its body after the header), inflated
/// as a stream that ends one byte past `max_inflated_bytes`: one byte past the bound
/// tells "exactly at the bound" from "beyond it".
pub(crate) fn inflater(body: &[u8], codec: u8, max_inflated_bytes: usize) -> Result<Box<dyn Read + '_>, BatchError> {
    let inflate = |e: std::io::Error| BatchError::Undecodable(format!("codec {codec}: {e}"));
    let stream: Box<dyn Read + '_> = match codec {
        1 => Box::new(flate2::bufread::MultiGzDecoder::new(body)),
        2 => Box::new(XerialSnappy::new(body, max_inflated_bytes)),
        3 => Box::new(lz4::Decoder::new(body).map_err(inflate)?),
        4 => {
            let mut d = zstd::stream::read::Decoder::with_buffer(body).map_err(inflate)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(inflate)?;
            Box::new(d)
        }
        other => return Err(BatchError::Undecodable(format!("unknown compression codec {other}"))),
    };
    Ok(Box::new(stream.take(max_inflated_bytes as u64 + 1)))
}

/// zstd frames may ask for a window of up to 2^31 bytes; a producer's (zstd-jni at its
/// default level) uses at most 2^21-2^23. 2^24 (16 MiB) bounds what one frame header
/// can make the broker allocate.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// Read buffer between a decompressor and the walk.
const STREAM_BUFFER_BYTES: usize = 16 * 1024;

/// Where the walk takes its bytes from: the batch itself, or an inflating stream.
trait Source {
    /// The next byte, or `None` at the end of the records.
    fn byte(&mut self) -> Result<Option<u8>, BatchError>;
    /// Skips `n` bytes; false when fewer remain.
    fn skip(&mut self, n: usize) -> Result<bool, BatchError>;
}

struct SliceSource<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Source for SliceSource<'_> {
    fn byte(&mut self) -> Result<Option<u8>, BatchError> {
        let b = self.buf.get(self.pos).copied();
        self.pos += usize::from(b.is_some());
        Ok(b)
    }

    fn skip(&mut self, n: usize) -> Result<bool, BatchError> {
        match self.pos.checked_add(n).filter(|&end| end <= self.buf.len()) {
            Some(end) => {
                self.pos = end;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

struct StreamSource<R> {
    reader: BufReader<R>,
    consumed: usize,
    max: usize,
    codec: u8,
}

impl<R: Read> StreamSource<R> {
    fn fill(&mut self) -> Result<&[u8], BatchError> {
        let codec = self.codec;
        self.reader.fill_buf().map_err(|e| BatchError::Undecodable(format!("codec {codec}: {e}")))
    }

    fn advance(&mut self, n: usize) -> Result<(), BatchError> {
        self.reader.consume(n);
        self.consumed += n;
        if self.consumed > self.max {
            return Err(BatchError::InvalidRecords(format!(
                "the compressed records inflate past {} bytes (64 x max.message.bytes): refused as a compression bomb",
                self.max
            )));
        }
        Ok(())
    }
}

impl<R: Read> Source for StreamSource<R> {
    fn byte(&mut self) -> Result<Option<u8>, BatchError> {
        let b = self.fill()?.first().copied();
        if b.is_some() {
            self.advance(1)?;
        }
        Ok(b)
    }

    fn skip(&mut self, mut n: usize) -> Result<bool, BatchError> {
        while n > 0 {
            let available = self.fill()?.len();
            if available == 0 {
                return Ok(false);
            }
            let step = available.min(n);
            self.advance(step)?;
            n -= step;
        }
        Ok(true)
    }
}

struct Walk<'h, F> {
    header: &'h BatchHeader,
    each: F,
}

impl<F: FnMut(RecordMeta) -> Result<(), BatchError>> Walk<'_, F> {
    fn run(mut self, source: &mut dyn Source) -> Result<(), BatchError> {
        let bad = |why: String| BatchError::InvalidRecords(why);
        let claimed = i64::from(self.header.record_count);
        let mut count: i64 = 0;
        while let Some(first) = source.byte()? {
            if count == claimed {
                return Err(bad(format!("the header counts {claimed} records, the batch holds more")));
            }
            let (length, _) =
                varint(first, source)?.ok_or_else(|| bad(format!("record {count}: unreadable length")))?;
            let length = usize::try_from(length).map_err(|_| bad(format!("record {count}: negative length")))?;
            // attributes (1 byte), timestamp delta (varlong), offset delta (varint)
            let mut used = 0usize;
            let mut next = |source: &mut dyn Source| -> Result<u8, BatchError> {
                used += 1;
                source.byte()?.ok_or_else(|| bad(format!("record {count} is truncated")))
            };
            next(source)?;
            let ts_delta =
                varlong_with(&mut next, source)?.ok_or_else(|| bad(format!("record {count}: bad timestamp")))?;
            let delta =
                varint_with(&mut next, source)?.ok_or_else(|| bad(format!("record {count}: bad offset delta")))?;
            if used > length {
                return Err(bad(format!("record {count} of {length} bytes is shorter than its fields")));
            }
            if i64::from(delta) != count {
                return Err(bad(format!("record {count} has offset delta {delta}")));
            }
            if !source.skip(length - used)? {
                return Err(bad(format!("record {count} of {length} bytes runs past the batch")));
            }
            let timestamp = if self.header.timestamp_type_is_log_append() {
                self.header.max_timestamp
            } else {
                self.header.base_timestamp.wrapping_add(ts_delta)
            };
            (self.each)(RecordMeta { offset_delta: delta, timestamp })?;
            count += 1;
        }
        if count != claimed {
            return Err(bad(format!("the header counts {claimed} records, the batch holds {count}")));
        }
        Ok(())
    }
}

/// A zigzag varint (at most 5 bytes) whose first byte is `first`; the rest from `source`.
fn varint(first: u8, source: &mut dyn Source) -> Result<Option<(i32, usize)>, BatchError> {
    let mut n = 0usize;
    let mut pending = Some(first);
    let mut next = |source: &mut dyn Source| -> Result<u8, BatchError> {
        n += 1;
        match pending.take() {
            Some(b) => Ok(b),
            None => source.byte()?.ok_or_else(|| BatchError::InvalidRecords("a record length is truncated".into())),
        }
    };
    let v = varint_with(&mut next, source)?;
    Ok(v.map(|v| (v, n)))
}

fn varint_with(
    next: &mut dyn FnMut(&mut dyn Source) -> Result<u8, BatchError>,
    source: &mut dyn Source,
) -> Result<Option<i32>, BatchError> {
    let Some(raw) = unsigned_varint(next, source, 5)? else { return Ok(None) };
    let Ok(raw) = u32::try_from(raw) else { return Ok(None) };
    Ok(Some(((raw >> 1) as i32) ^ -((raw & 1) as i32)))
}

fn varlong_with(
    next: &mut dyn FnMut(&mut dyn Source) -> Result<u8, BatchError>,
    source: &mut dyn Source,
) -> Result<Option<i64>, BatchError> {
    let Some(raw) = unsigned_varint(next, source, 10)? else { return Ok(None) };
    Ok(Some(((raw >> 1) as i64) ^ -((raw & 1) as i64)))
}

fn unsigned_varint(
    next: &mut dyn FnMut(&mut dyn Source) -> Result<u8, BatchError>,
    source: &mut dyn Source,
    max_bytes: usize,
) -> Result<Option<u64>, BatchError> {
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        let b = next(source)?;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// Snappy as Kafka's Java clients write it: snappy-java's "xerial" stream, a 16-byte
/// header (`\x82SNAPPY\0`, version, compatible version) and then blocks of a 4-byte
/// big-endian length and a raw snappy block. Without the header the whole input is one
/// raw block, as snappy-java reads it. The `snap` crate reads raw blocks and its own
/// framing, not this one. Each block's inflated size is read from its preamble and
/// checked against what the budget leaves before anything is allocated.
struct XerialSnappy<'a> {
    input: &'a [u8],
    block: Vec<u8>,
    at: usize,
    budget: usize,
    framed: bool,
}

pub(crate) const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\0";
const XERIAL_HEADER_BYTES: usize = 16;

impl<'a> XerialSnappy<'a> {
    fn new(input: &'a [u8], budget: usize) -> XerialSnappy<'a> {
        let framed = input.starts_with(XERIAL_MAGIC);
        let input = if framed { input.get(XERIAL_HEADER_BYTES..).unwrap_or(&[]) } else { input };
        XerialSnappy { input, block: Vec::new(), at: 0, budget, framed }
    }

    /// Inflates the next block into `self.block`; false at the end of the input.
    fn next_block(&mut self) -> std::io::Result<bool> {
        let bad = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
        if self.input.is_empty() {
            return Ok(false);
        }
        let raw = if self.framed {
            let len = self.input.get(..4).ok_or_else(|| bad("truncated snappy block length".into()))?;
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let raw = self.input.get(4..4 + len).ok_or_else(|| bad("truncated snappy block".into()))?;
            self.input = &self.input[4 + len..];
            raw
        } else {
            std::mem::take(&mut self.input)
        };
        let size = snap::raw::decompress_len(raw).map_err(|e| bad(e.to_string()))?;
        // One byte more than the budget is enough for the walk to see the bound crossed.
        if size > self.budget.saturating_add(1) {
            return Err(bad(format!("a snappy block inflates to {size} bytes, past what the batch may hold")));
        }
        self.budget = self.budget.saturating_sub(size);
        self.block.resize(size, 0);
        let n = snap::raw::Decoder::new().decompress(raw, &mut self.block).map_err(|e| bad(e.to_string()))?;
        self.block.truncate(n);
        self.at = 0;
        Ok(true)
    }
}

impl Read for XerialSnappy<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.block.len() - self.at);
        out[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::batch::check_batch;

    const NO_LIMIT: usize = usize::MAX / 2;

    fn limits() -> RecordLimits {
        RecordLimits::for_max_message_bytes(1024 * 1024)
    }

    /// Raw records (length-prefixed) with the given offset deltas and timestamp deltas,
    /// each carrying `value_len` bytes of value.
    fn raw_records(deltas: &[(u8, u8)], value_len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for &(offset_delta, ts_delta) in deltas {
            let mut body = vec![0u8, ts_delta * 2, offset_delta * 2, 1]; // attrs, ts, offset, key null
            zigzag(&mut body, value_len as i64);
            body.extend(std::iter::repeat_n(b'v', value_len));
            body.push(0); // no headers
            let mut len = Vec::new();
            zigzag(&mut len, body.len() as i64);
            out.extend(len);
            out.extend(body);
        }
        out
    }

    pub(crate) fn zigzag(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    /// A batch of `n` records (dense offset and timestamp deltas, compressible values)
    /// with its records compressed as `codec`.
    pub(crate) fn encoded_batch(n: usize, codec: dlog_core::Codec) -> Vec<u8> {
        let mut raw = Vec::new();
        for i in 0..n {
            let value = format!("value-{i}-").repeat(10);
            let mut body = vec![0u8];
            zigzag(&mut body, i as i64); // timestamp delta
            zigzag(&mut body, i as i64); // offset delta
            zigzag(&mut body, -1); // no key
            zigzag(&mut body, value.len() as i64);
            body.extend(value.as_bytes());
            zigzag(&mut body, 0); // no headers
            zigzag(&mut raw, body.len() as i64);
            raw.extend(body);
        }
        batch_of(&compress(codec.id(), &raw), n as i32, codec.id(), 1_700_000_000_000)
    }

    /// A batch with header count `count`, codec `codec`, holding `payload` (already
    /// compressed as `codec` says).
    pub(crate) fn batch_of(payload: &[u8], count: i32, codec: u8, base_timestamp: i64) -> Vec<u8> {
        let spec = crate::testing::BatchSpec {
            payload_bytes: payload.len(),
            base_timestamp,
            max_timestamp: base_timestamp,
            ..crate::testing::BatchSpec::records(count)
        };
        let mut b = crate::testing::batch(&spec);
        b[RECORD_BATCH_HEADER_BYTES..].copy_from_slice(payload);
        let attrs = i16::from(codec);
        b[21..23].copy_from_slice(&attrs.to_be_bytes());
        let crc = crate::batch::compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    pub(crate) fn compress(codec: u8, raw: &[u8]) -> Vec<u8> {
        use std::io::Write;
        match codec {
            0 => raw.to_vec(),
            1 => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(raw).unwrap();
                e.finish().unwrap()
            }
            2 => {
                let mut out = Vec::from(&b"\x82SNAPPY\0\0\0\0\x01\0\0\0\x01"[..]);
                for chunk in raw.chunks(32 * 1024) {
                    let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                    out.extend((block.len() as u32).to_be_bytes());
                    out.extend(block);
                }
                out
            }
            3 => {
                let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
                e.write_all(raw).unwrap();
                let (out, r) = e.finish();
                r.unwrap();
                out
            }
            4 => zstd::encode_all(raw, 3).unwrap(),
            _ => unreachable!(),
        }
    }

    fn check(b: &[u8], limits: &RecordLimits) -> Result<(), BatchError> {
        check_records(b, &check_batch(b).unwrap(), limits)
    }

    #[test]
    fn every_codec_walks_good_records_and_refuses_a_false_count() {
        let raw = raw_records(&[(0, 0), (1, 1), (2, 2)], 10);
        for codec in 0..=4 {
            let payload = compress(codec, &raw);
            assert_eq!(check(&batch_of(&payload, 3, codec, 1000), &limits()), Ok(()), "codec {codec}");
            let claimed = batch_of(&payload, 2_000_000_000, codec, 1000);
            let e = check(&claimed, &limits()).unwrap_err();
            assert!(e.to_string().contains("counts 2000000000 records, the batch holds 3"), "codec {codec}: {e}");
            let fewer = batch_of(&payload, 2, codec, 1000);
            assert!(check(&fewer, &limits()).is_err(), "codec {codec}: more records than counted");
            let gap = compress(codec, &raw_records(&[(0, 0), (2, 0)], 1));
            assert!(check(&batch_of(&gap, 2, codec, 0), &limits()).is_err(), "codec {codec}: offset gap");
        }
    }

    #[test]
    fn a_compression_bomb_is_refused_at_the_bound_for_every_codec() {
        // One record of 8 MiB of zeroes: a few KiB compressed.
        let raw = raw_records(&[(0, 0)], 8 * 1024 * 1024);
        let small = RecordLimits { max_inflated_bytes: 1024 * 1024, timestamps: None };
        for codec in 1..=4 {
            let payload = compress(codec, &raw);
            assert!(payload.len() < 1024 * 1024, "codec {codec}: {} bytes", payload.len());
            let b = batch_of(&payload, 1, codec, 0);
            let e = check(&b, &small).unwrap_err();
            assert!(e.to_string().contains("inflate"), "codec {codec}: {e}");
            assert_eq!(check(&b, &RecordLimits { max_inflated_bytes: NO_LIMIT, timestamps: None }), Ok(()));
        }
    }

    #[test]
    fn timestamps_outside_the_window_are_refused() {
        let raw = raw_records(&[(0, 0), (1, 50)], 1);
        let b = batch_of(&raw, 2, 0, 1_000);
        let window = |now, before, after| limits().with_timestamp_window(now, before, after);
        assert_eq!(check(&b, &window(1_000, 0, 50)), Ok(()));
        let e = check(&b, &window(1_000, 0, 49)).unwrap_err();
        assert!(matches!(e, BatchError::InvalidTimestamp(_)), "{e}");
        assert!(check(&b, &window(2_000, 999, i64::MAX)).is_err(), "1000 is before 2000 - 999");
        assert_eq!(check(&b, &window(2_000, i64::MAX, 0)), Ok(()), "no lower bound by default");
    }

    #[test]
    fn corrupt_compressed_data_is_undecodable_not_a_panic() {
        let raw = raw_records(&[(0, 0)], 100);
        for codec in 1..=4 {
            let mut payload = compress(codec, &raw);
            let mid = payload.len() / 2;
            payload.truncate(mid);
            assert!(check(&batch_of(&payload, 1, codec, 0), &limits()).is_err(), "codec {codec}");
        }
        let b = batch_of(b"abc", 1, 5, 0);
        assert!(matches!(check(&b, &limits()), Err(BatchError::Undecodable(_))));
    }

    #[test]
    fn the_walk_reports_offsets_and_timestamps() {
        let raw = raw_records(&[(0, 0), (1, 7), (2, 3)], 2);
        for codec in 0..=4 {
            let b = batch_of(&compress(codec, &raw), 3, codec, 100);
            let mut seen = Vec::new();
            walk_records(&b, &check_batch(&b).unwrap(), NO_LIMIT, |r| {
                seen.push((r.offset_delta, r.timestamp));
                Ok(())
            })
            .unwrap();
            assert_eq!(seen, vec![(0, 100), (1, 107), (2, 103)], "codec {codec}");
        }
    }
}
