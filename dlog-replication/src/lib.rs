//! Per-partition data replication for DLog: the leader (sequencer) of each partition
//! and epoch, flexible write and read quorums over copysets, the high watermark, and
//! epoch recovery with truncation of divergent tails.
//!
//! Nothing lives here yet: a single node has one replica per partition, whose high
//! watermark is its log end offset (`dlog_server::partition`). The replication engine
//! will be I/O-free (events in, commands out) so that it can be tested exhaustively and
//! driven by the deterministic simulator.
//!
//! Boundary: this crate never sees Kafka wire types.
