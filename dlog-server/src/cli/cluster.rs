//! `dlog cluster status`: the cluster as any broker sees it (Kafka's DescribeCluster),
//! so it also works against Apache Kafka.

use anyhow::Result;
use dlog_protocol::kafka_protocol::messages::{ApiKey, DescribeClusterRequest};

use super::client::{describe_error, Client};
use super::BootstrapArgs;

#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
    #[command(flatten)]
    bootstrap: BootstrapArgs,
}

#[derive(Debug, clap::Subcommand)]
enum ClusterCommand {
    /// The cluster id, the active controller and every live broker.
    Status,
}

pub fn run(args: ClusterArgs) -> Result<()> {
    match args.command {
        ClusterCommand::Status => status(&args.bootstrap.bootstrap),
    }
}

fn status(bootstrap: &str) -> Result<()> {
    let mut client = Client::connect(bootstrap)?;
    let r = client.call_any(ApiKey::DescribeCluster, DescribeClusterRequest::default())?;
    if r.error_code != 0 {
        anyhow::bail!("describe cluster: {}", describe_error(r.error_code));
    }
    println!("cluster id: {}", r.cluster_id);
    match r.controller_id.0 {
        -1 => println!("controller: none (electing)"),
        id => println!("controller: {id}"),
    }
    let mut brokers: Vec<_> = r.brokers.iter().collect();
    brokers.sort_by_key(|b| b.broker_id.0);
    println!("brokers: {}", brokers.len());
    for b in brokers {
        let rack = b.rack.as_ref().map(|r| format!(" rack {r}")).unwrap_or_default();
        let role = if b.broker_id == r.controller_id { " (controller)" } else { "" };
        println!("  {} {}:{}{rack}{role}", b.broker_id.0, b.host, b.port);
    }
    Ok(())
}
