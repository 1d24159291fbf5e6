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
    Broker(BrokerArgs),
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
    let result = match cli.command {
        Command::Broker(args) => run_broker(args),
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

fn run_broker(args: BrokerArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("DLOG_LOG").unwrap_or_else(|_| "info".into()))
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
