//! The `dlog` command line: `broker` runs a node; `topic`, `produce`, `consume` and
//! `cluster` are tools for people that speak the Kafka protocol to any broker (DLog or
//! Kafka).
//! Every failure prints what went wrong and exits non-zero.

pub mod client;
mod cluster;
mod consume;
mod produce;
mod topic;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::broker::Broker;
use crate::config::{BrokerArgs, BrokerConfig};

#[derive(Parser)]
#[command(name = "dlog", version, about = "DLog: a Kafka-compatible event-streaming broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker (with no flags: one node, data in ./data, Kafka on 127.0.0.1:9092).
    Broker(Box<BrokerArgs>),
    /// Create, list, describe, alter and delete topics.
    Topic(topic::TopicArgs),
    /// Produce lines from standard input, one record per line.
    Produce(produce::ProduceArgs),
    /// Print records of a topic.
    Consume(consume::ConsumeArgs),
    /// Show the cluster: its id, the controller and the live brokers.
    Cluster(cluster::ClusterArgs),
}

/// Connection options shared by the tools.
#[derive(Debug, Clone, clap::Args)]
pub struct BootstrapArgs {
    /// A broker to bootstrap from, HOST:PORT.
    #[arg(long, env = "DLOG_BOOTSTRAP", default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap: String,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Broker(_)) {
        // A tool whose reader went away (`dlog topic describe t | head -3`) ends quietly,
        // as Unix tools do, rather than panicking on the failed write. The broker keeps
        // Rust's default (SIGPIPE ignored): a client closing its socket is an error to
        // handle, not a reason to die.
        // SAFETY: restores the default disposition of one signal before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.command {
        Command::Broker(args) => run_broker(*args),
        Command::Topic(args) => topic::run(args),
        Command::Produce(args) => produce::run(args),
        Command::Consume(args) => consume::run(args),
        Command::Cluster(args) => cluster::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dlog: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The log filter when neither `DLOG_LOG` nor `RUST_LOG` gives one: DLog's own INFO,
/// its dependencies' WARN (openraft alone writes dozens of INFO lines per election).
const DEFAULT_LOG_FILTER: &str = "warn,dlog=info,dlog_server=info,dlog_consensus=info,dlog_storage=info,\
                                  dlog_replication=info,dlog_protocol=info,dlog_rpc=info,dlog_core=info";

fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("DLOG_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| DEFAULT_LOG_FILTER.into())
}

fn run_broker(args: BrokerArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = BrokerConfig::resolve(&args)?;
    // The control runtime: signals and the metrics endpoint. Shards have their own.
    let control = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    if let Some(addr) = config.metrics_listen {
        let _guard = control.enter();
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .map_err(|e| anyhow::anyhow!("--metrics-listen {addr}: {e}"))?;
    }
    let broker = Broker::start(config)?;
    control.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down");
        Ok::<_, std::io::Error>(())
    })?;
    broker.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_log_filter_parses_and_keeps_dependencies_at_warn() {
        let f: tracing_subscriber::EnvFilter = super::DEFAULT_LOG_FILTER.parse().expect("a valid filter");
        let text = f.to_string();
        assert!(text.contains("warn") && text.contains("dlog_server=info"), "{text}");
    }
}
