//! Cluster metadata for DLog: the `MetadataStore` trait (a versioned key space with
//! Oxia's semantics), its built-in implementation on openraft, the Oxia adapter, and the
//! controller state machine built on top.
//!
//! Nothing lives here yet: a single node keeps its topic registry in the server
//! (`dlog_server::topics`). The cluster work moves that registry behind the trait this
//! crate will define; the server then depends on the trait, never on an implementation.
//!
//! Boundary: this crate never sees Kafka wire types or storage internals.
