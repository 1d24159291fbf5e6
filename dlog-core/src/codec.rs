//! The compression codecs of record batches (the low three bits of a batch's
//! attributes) and what a topic's `compression.type` asks of them.

/// A record batch codec, by its id in the batch attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// Every codec, by id.
    pub const ALL: [Codec; 5] = [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd];

    /// Its id in a batch's attributes.
    pub fn id(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    /// The codec of attribute id `id`, if there is one.
    pub fn from_id(id: u8) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.id() == id)
    }

    /// Its name as `compression.type` spells it (`uncompressed` for none).
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "uncompressed",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// A topic's `compression.type`: keep the producer's codec, or store every batch in one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    /// `producer`: batches are stored as the producer compressed them.
    Producer,
    /// A codec: batches in any other codec are recompressed into it on produce.
    Codec(Codec),
}

impl CompressionType {
    /// Parses a `compression.type` value.
    pub fn parse(value: &str) -> Option<CompressionType> {
        match value {
            "producer" => Some(CompressionType::Producer),
            other => Codec::ALL.into_iter().find(|c| c.name() == other).map(CompressionType::Codec),
        }
    }

    /// Its `compression.type` value.
    pub fn name(self) -> &'static str {
        match self {
            CompressionType::Producer => "producer",
            CompressionType::Codec(c) => c.name(),
        }
    }
}

/// Kafka's default `compression.lz4.level`, which its LZ4 writer takes to mean LZ4's fast
/// compressor (every other level is LZ4HC at that level).
pub const LZ4_DEFAULT_LEVEL: i32 = 9;

/// The codec and level a batch is recompressed with (`compression.<codec>.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    pub codec: Codec,
    /// The codec's level: gzip 1-9 (or -1, its default 6), lz4 1-17, zstd -131072-22.
    /// Ignored by none and snappy.
    pub level: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_round_trip_through_ids_and_names() {
        for c in Codec::ALL {
            assert_eq!(Codec::from_id(c.id()), Some(c));
            assert_eq!(CompressionType::parse(c.name()), Some(CompressionType::Codec(c)));
        }
        assert_eq!(Codec::from_id(5), None);
        assert_eq!(CompressionType::parse("producer"), Some(CompressionType::Producer));
        assert_eq!(CompressionType::parse("none"), None, "Kafka spells it uncompressed");
    }
}
