//! Integration tests of `dlog-storage`, one module per area, all through the public
//! API of `PartitionLog`.

mod append_read;
mod crash;
mod idempotence;
mod model;
mod retention;
mod startup;
mod util;
