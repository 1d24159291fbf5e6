//! `dlog cluster status`: the cluster as any broker sees it (Kafka's DescribeCluster),
//! so it also works against Apache Kafka. `dlog cluster add-node` and `remove-node`
//! change the metadata group's membership through any node (KIP-853's AddRaftVoter
//! and RemoveRaftVoter). `dlog cluster rebalance-leaders` is a preferred leader
//! election of every partition (KIP-460's ElectLeaders).

use anyhow::Result;
use dlog_protocol::kafka_protocol::messages::add_raft_voter_request::Listener;
use dlog_protocol::kafka_protocol::messages::{
    AddRaftVoterRequest, ApiKey, DescribeClusterRequest, ElectLeadersRequest, RemoveRaftVoterRequest,
};
use dlog_protocol::kafka_protocol::protocol::StrBytes;

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
    /// Add a node to the cluster. Start it first, with `--cluster-nodes` listing every
    /// current member and itself; it waits until added, then catches up and serves.
    AddNode {
        /// The new node's `--node-id`.
        #[arg(long)]
        node_id: i32,
        /// The new node's `--rpc-listen` address, HOST:PORT, as the others reach it.
        #[arg(long)]
        rpc: String,
    },
    /// Remove a node (which must hold no partition) from the cluster.
    RemoveNode {
        #[arg(long)]
        node_id: i32,
    },
    /// Give every partition back to its preferred (first) replica where that replica's
    /// broker is live (after a failover moved leaders away). The controller also does
    /// this by itself once a returned broker has been live for a while.
    RebalanceLeaders,
}

pub fn run(args: ClusterArgs) -> Result<()> {
    let bootstrap = &args.bootstrap.bootstrap;
    match args.command {
        ClusterCommand::Status => status(bootstrap),
        ClusterCommand::AddNode { node_id, rpc } => add_node(bootstrap, node_id, &rpc),
        ClusterCommand::RemoveNode { node_id } => remove_node(bootstrap, node_id),
        ClusterCommand::RebalanceLeaders => rebalance_leaders(bootstrap),
    }
}

fn rebalance_leaders(bootstrap: &str) -> Result<()> {
    // No topic list: every partition (KIP-460).
    let request =
        ElectLeadersRequest::default().with_election_type(0).with_topic_partitions(None).with_timeout_ms(30_000);
    let r = Client::connect(bootstrap)?.call_any(ApiKey::ElectLeaders, request)?;
    if r.error_code != 0 {
        anyhow::bail!("rebalance leaders: {}", describe_error(r.error_code));
    }
    let (mut moved, mut already, mut failed) = (0, 0, Vec::new());
    for t in &r.replica_election_results {
        for p in &t.partition_result {
            match p.error_code {
                0 => moved += 1,
                84 => already += 1,
                code => failed.push(format!("{}-{}: {}", t.topic.0, p.partition_id, describe_error(code))),
            }
        }
    }
    println!("moved {moved} partition leader(s) to their preferred replica; {already} already there");
    for f in &failed {
        println!("  not moved: {f}");
    }
    Ok(())
}

fn add_node(bootstrap: &str, node_id: i32, rpc: &str) -> Result<()> {
    let (host, port) = rpc.rsplit_once(':').ok_or_else(|| anyhow::anyhow!("--rpc {rpc:?} is not HOST:PORT"))?;
    let port: u16 = port.parse().map_err(|_| anyhow::anyhow!("--rpc {rpc:?}: {port:?} is not a port"))?;
    let request = AddRaftVoterRequest::default()
        .with_cluster_id(None)
        .with_voter_id(node_id)
        .with_timeout_ms(30_000)
        .with_listeners(vec![Listener::default()
            .with_name(StrBytes::from_static_str(crate::handlers::raft_voters::RPC_LISTENER))
            .with_host(StrBytes::from_string(host.to_string()))
            .with_port(port)]);
    let r = Client::connect(bootstrap)?.call_version(request, 0)?;
    if r.error_code != 0 {
        anyhow::bail!(
            "cannot add node {node_id}: {} - {}",
            describe_error(r.error_code),
            r.error_message.unwrap_or_default()
        );
    }
    println!("added node {node_id} ({rpc})");
    Ok(())
}

fn remove_node(bootstrap: &str, node_id: i32) -> Result<()> {
    let request = RemoveRaftVoterRequest::default().with_cluster_id(None).with_voter_id(node_id);
    let r = Client::connect(bootstrap)?.call_version(request, 0)?;
    if r.error_code != 0 {
        anyhow::bail!(
            "cannot remove node {node_id}: {} - {}",
            describe_error(r.error_code),
            r.error_message.unwrap_or_default()
        );
    }
    println!("removed node {node_id}");
    Ok(())
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
