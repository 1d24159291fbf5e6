//! One property test per fuzz target (`dlog_fuzz::TARGETS`): random bytes, and
//! structured mutations of the target's valid seeds (bit flips, boundary integers and
//! varints, truncation, insertion, deletion, duplication, splices, decimal numbers in
//! text), half of them with checksums and lengths made right again so that the decoder
//! looks past them.
//!
//! Cases: proptest's default (256), or `PROPTEST_CASES`; the slower targets (those
//! that write files) run a quarter as many. A failure is shrunk, printed with its
//! input, and recorded in `proptest-regressions/fuzz.txt`, which is replayed first on
//! every later run: that is how a crash becomes a regression test (`tests/regressions.rs`
//! also spells out the ones found so far).
//!
//! `DLOG_FUZZ_REPLAY=<target>:<file>` runs one target on a file's bytes (the input a
//! soak run saved before a process abort, see `scripts/fuzz-soak.sh`), and
//! `DLOG_FUZZ_LAST_INPUT=<dir>` makes every case write its input to
//! `<dir>/<target>.last` before it runs, for a crash that takes the process down.

use std::sync::OnceLock;

use dlog_fuzz::mutate::{self, Mutation};
use proptest::prelude::*;
use proptest::test_runner::{Config, FailurePersistence, FileFailurePersistence};

/// Inputs are at most this long (random ones and mutated seeds).
const MAX_INPUT: usize = 4096;

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        3 => (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::SetByte { at, value }),
        3 => (any::<usize>(), any::<u8>(), any::<usize>())
            .prop_map(|(at, width, which)| Mutation::Interesting { at, width, which }),
        2 => (any::<usize>(), any::<usize>(), any::<bool>(), any::<bool>())
            .prop_map(|(at, which, zigzag, insert)| Mutation::Varint { at, which, zigzag, insert }),
        2 => any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        2 => (any::<usize>(), 1..64usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => (any::<usize>(), 1..128usize, any::<usize>())
            .prop_map(|(from, len, to)| Mutation::Duplicate { from, len, to }),
        2 => (any::<usize>(), 1..128usize, any::<usize>(), any::<usize>())
            .prop_map(|(at, len, other, from)| Mutation::Splice { at, len, other, from }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(nth, which)| Mutation::Number { nth, which }),
    ]
}

/// The seeds of `name`, built once per test process.
fn seeds(name: &'static str) -> &'static [Vec<u8>] {
    type Seeds = Vec<(&'static str, Vec<Vec<u8>>)>;
    static ALL: OnceLock<Seeds> = OnceLock::new();
    let all = ALL.get_or_init(|| dlog_fuzz::TARGETS.iter().map(|&(n, _)| (n, dlog_fuzz::seeds::seeds(n))).collect());
    &all.iter().find(|(n, _)| *n == name).expect("a target").1
}

/// Random bytes (1 in 8), a seed as it is (1 in 8) or a mutated seed of target `name`.
fn input(name: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds(name);
    assert!(!seeds.is_empty(), "target {name} has no seeds");
    let mutated = (0..seeds.len(), prop::collection::vec(mutation(), 1..6), any::<bool>()).prop_map(
        move |(i, mutations, repair)| {
            let mut data = mutate::apply(&seeds[i], seeds, &mutations, MAX_INPUT);
            if repair {
                dlog_fuzz::repair(name, &mut data);
            }
            data
        },
    );
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..MAX_INPUT),
        1 => (0..seeds.len()).prop_map(move |i| seeds[i].clone()),
        6 => mutated,
    ]
}

/// proptest's configuration (and so `PROPTEST_CASES`), with `1 / divisor` of its cases;
/// failures recorded in `proptest-regressions/fuzz.txt` (unless
/// `PROPTEST_DISABLE_FAILURE_PERSISTENCE` is set).
fn config(divisor: u32) -> Config {
    let base = Config::default();
    let persistence = base.failure_persistence.is_some().then(|| {
        Box::new(FileFailurePersistence::Direct("proptest-regressions/fuzz.txt")) as Box<dyn FailurePersistence>
    });
    Config { cases: (base.cases / divisor).max(1), failure_persistence: persistence, ..base }
}

/// Runs target `name` on `data`, first saving the input if `DLOG_FUZZ_LAST_INPUT` says where.
fn run(name: &str, data: &[u8]) {
    static LAST: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    if let Some(dir) = LAST.get_or_init(|| std::env::var_os("DLOG_FUZZ_LAST_INPUT").map(Into::into)) {
        let _ = std::fs::write(dir.join(format!("{name}.last")), data);
    }
    dlog_fuzz::target(name).expect("a target")(data);
}

macro_rules! fuzz {
    ($($name:ident / $divisor:literal),* $(,)?) => {
        $(
            proptest! {
                #![proptest_config(config($divisor))]
                #[test]
                fn $name(data in input(stringify!($name))) {
                    run(stringify!($name), &data);
                }
            }
        )*

        /// Every target has its test here.
        #[test]
        fn every_target_is_fuzzed() {
            let tested = [$(stringify!($name)),*];
            for (name, _) in dlog_fuzz::TARGETS {
                assert!(tested.contains(name), "no test for target {name}");
            }
        }
    };
}

fuzz! {
    frame_split / 1,
    request_decode / 1,
    batch_validate / 1,
    records_decode / 1,
    epoch_cache / 1,
    producer_snapshot / 1,
    checkpoint / 1,
    partition_dir / 4,
    kv_snapshot / 1,
    raft_snapshot_file / 1,
    raft_rpc / 1,
    raft_log_values / 1,
    rpc_envelope / 1,
    replica_rpc / 1,
    controller_rpc / 1,
    metadata_values / 1,
    group_records / 1,
    server_files / 4,
}

/// Every seed passes its target's checks as it is.
#[test]
fn every_seed_passes_its_target() {
    for &(name, target) in dlog_fuzz::TARGETS {
        for seed in seeds(name) {
            target(seed);
        }
    }
}

/// The request seeds hold every API at every version the registry lists, so that the
/// mutations start from each of them.
#[test]
fn every_registered_api_and_version_has_a_seed() {
    use dlog_protocol::registry::SUPPORTED_APIS;
    let seeded: std::collections::BTreeSet<(i16, i16)> = seeds("request_decode")
        .iter()
        .map(|f| {
            let r = dlog_protocol::codec::decode_request(bytes::Bytes::copy_from_slice(f)).expect("a seed decodes");
            (r.api_key as i16, r.version)
        })
        .collect();
    for api in SUPPORTED_APIS {
        for version in api.min_version..=api.max_version {
            assert!(seeded.contains(&(api.key as i16, version)), "no seed for {:?} v{version}", api.key);
        }
    }
}

/// `DLOG_FUZZ_REPLAY=<target>:<file>`: one target on one saved input.
#[test]
fn replay() {
    let Ok(spec) = std::env::var("DLOG_FUZZ_REPLAY") else { return };
    let (name, path) = spec.split_once(':').expect("DLOG_FUZZ_REPLAY=<target>:<file>");
    let data = std::fs::read(path).expect("a readable input file");
    dlog_fuzz::target(name).unwrap_or_else(|| panic!("no target {name}"))(&data);
}
