//! Structured mutations of valid inputs, so that decoders are driven past their first
//! checks: flipped bits, bytes set to boundary values, integers and varints of
//! interesting values written over or inserted, truncation, insertion, deletion,
//! duplication, splicing with another seed, and decimal numbers in text replaced.
//!
//! Positions are taken modulo the input's length, so any `usize` is a valid one and a
//! generator does not need to know the seed. The same seed and mutations always give
//! the same bytes.

/// One change to an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Flips bit `bit % 8` of the byte at `at`.
    FlipBit { at: usize, bit: u8 },
    /// Sets the byte at `at`.
    SetByte { at: usize, value: u8 },
    /// Writes an interesting integer of `width` 1, 2, 4 or 8 bytes (big-endian) at `at`.
    Interesting { at: usize, width: u8, which: usize },
    /// Writes (or inserts) an interesting value as an unsigned LEB128 varint, or zigzag.
    Varint { at: usize, which: usize, zigzag: bool, insert: bool },
    /// Keeps the first `len` bytes.
    Truncate { len: usize },
    /// Inserts `bytes` at `at`.
    Insert { at: usize, bytes: Vec<u8> },
    /// Removes up to `len` bytes at `at`.
    Delete { at: usize, len: usize },
    /// Copies up to `len` bytes from `from` and inserts them at `to`.
    Duplicate { from: usize, len: usize, to: usize },
    /// Replaces up to `len` bytes at `at` with bytes of another seed (`other`, from `from`).
    Splice { at: usize, len: usize, other: usize, from: usize },
    /// Replaces the `nth` run of ASCII digits with an interesting decimal number.
    Number { nth: usize, which: usize },
}

/// Integers at the edges of the types decoders read.
pub const INTERESTING: &[i64] = &[
    0,
    1,
    -1,
    2,
    16,
    127,
    128,
    255,
    256,
    1024,
    4096,
    32767,
    -32768,
    65535,
    65536,
    1 << 20,
    2_000_000_000,
    i32::MAX as i64,
    i32::MIN as i64,
    u32::MAX as i64,
    1 << 32,
    i64::MAX,
    i64::MIN,
    i64::MAX - 1,
];

fn interesting(which: usize) -> i64 {
    INTERESTING[which % INTERESTING.len()]
}

fn at(pos: usize, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        pos % len
    }
}

fn leb128(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// Applies `mutations` in order to a copy of `seed`; `others` are the seeds splices
/// take bytes from. The result is at most `max_len` bytes.
pub fn apply(seed: &[u8], others: &[Vec<u8>], mutations: &[Mutation], max_len: usize) -> Vec<u8> {
    let mut b = seed.to_vec();
    for m in mutations {
        let len = b.len();
        match m {
            Mutation::FlipBit { at: p, bit } => {
                if len > 0 {
                    b[at(*p, len)] ^= 1 << (bit % 8);
                }
            }
            Mutation::SetByte { at: p, value } => {
                if len > 0 {
                    b[at(*p, len)] = *value;
                }
            }
            Mutation::Interesting { at: p, width, which } => {
                let width = [1usize, 2, 4, 8][usize::from(*width % 4)];
                let bytes = interesting(*which).to_be_bytes();
                let start = at(*p, len.saturating_sub(width) + 1);
                let end = (start + width).min(len);
                b[start..end].copy_from_slice(&bytes[8 - width..][..end - start]);
            }
            Mutation::Varint { at: p, which, zigzag, insert } => {
                let v = interesting(*which);
                let raw = if *zigzag { ((v << 1) ^ (v >> 63)) as u64 } else { v as u64 };
                let bytes = leb128(raw);
                let start = at(*p, len + 1);
                if *insert {
                    b.splice(start..start, bytes);
                } else {
                    let end = (start + bytes.len()).min(len);
                    b.splice(start..end, bytes);
                }
            }
            Mutation::Truncate { len: keep } => b.truncate(at(*keep, len + 1)),
            Mutation::Insert { at: p, bytes } => {
                let start = at(*p, len + 1);
                b.splice(start..start, bytes.iter().copied());
            }
            Mutation::Delete { at: p, len: n } => {
                let start = at(*p, len + 1);
                let end = start.saturating_add(*n).min(len);
                b.drain(start..end);
            }
            Mutation::Duplicate { from, len: n, to } => {
                let start = at(*from, len + 1);
                let end = start.saturating_add(*n).min(len);
                let chunk = b[start..end].to_vec();
                let to = at(*to, len + 1);
                b.splice(to..to, chunk);
            }
            Mutation::Splice { at: p, len: n, other, from } => {
                if let Some(o) = others.get(at(*other, others.len())) {
                    let from = at(*from, o.len() + 1);
                    let chunk = &o[from..from.saturating_add(*n).min(o.len())];
                    let start = at(*p, len + 1);
                    let end = start.saturating_add(chunk.len()).min(len);
                    b.splice(start..end, chunk.iter().copied());
                }
            }
            Mutation::Number { nth, which } => {
                let runs = digit_runs(&b);
                if !runs.is_empty() {
                    let (start, end) = runs[nth % runs.len()];
                    let number = interesting(*which).to_string();
                    b.splice(start..end, number.bytes());
                }
            }
        }
        b.truncate(max_len);
    }
    b
}

/// The (start, end) of every maximal run of ASCII digits.
fn digit_runs(b: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            runs.push((start, i));
        } else {
            i += 1;
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_in_bounds_and_do_what_they_say() {
        let seed = b"partitions = 3\nid = \"ab\"".to_vec();
        let others = vec![b"xyz".to_vec()];
        let m = |ms: &[Mutation]| apply(&seed, &others, ms, 64);
        assert_eq!(m(&[Mutation::Number { nth: 0, which: 16 }]), b"partitions = 2000000000\nid = \"ab\"".to_vec());
        assert_eq!(m(&[Mutation::Truncate { len: 4 }]), b"part".to_vec());
        assert_eq!(m(&[Mutation::Splice { at: 0, len: 2, other: 0, from: 1 }])[..4], *b"yzrt");
        assert_eq!(apply(b"", &[], &[Mutation::Interesting { at: 9, width: 3, which: 22 }], 64), Vec::<u8>::new());
        assert_eq!(apply(b"ab", &[], &[Mutation::Interesting { at: 9, width: 3, which: 0 }], 64), vec![0, 0]);
        let v = apply(b"", &[], &[Mutation::Varint { at: 0, which: 2, zigzag: true, insert: true }], 64);
        assert_eq!(v, vec![1], "zigzag(-1)");
        let long = apply(&seed, &others, &[Mutation::Duplicate { from: 0, len: 100, to: 3 }], 30);
        assert_eq!(long.len(), 30);
    }
}
