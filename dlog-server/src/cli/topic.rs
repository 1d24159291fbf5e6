//! `dlog topic create|list|describe|alter-config|delete`.

use anyhow::{bail, Context, Result};
use dlog_protocol::kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use dlog_protocol::kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use dlog_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use dlog_protocol::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use dlog_protocol::kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest, TopicName,
};
use dlog_protocol::kafka_protocol::protocol::StrBytes;

use super::client::{describe_error, Client};
use super::BootstrapArgs;

#[derive(Debug, clap::Args)]
pub struct TopicArgs {
    #[command(subcommand)]
    command: TopicCommand,
    #[command(flatten)]
    bootstrap: BootstrapArgs,
}

#[derive(Debug, clap::Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions (default: the broker's num.partitions).
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Replication factor (default: the broker's default).
        #[arg(long, short = 'r')]
        replication_factor: Option<i16>,
        /// A topic config KEY=VALUE; repeat for several.
        #[arg(long = "config", short = 'c', value_parser = parse_kv)]
        configs: Vec<(String, String)>,
    },
    /// List topics.
    List,
    /// Show a topic's partitions and configs.
    Describe { name: String },
    /// Set or remove topic configs.
    AlterConfig {
        name: String,
        /// KEY=VALUE to set; repeat for several.
        #[arg(long = "set", value_parser = parse_kv)]
        set: Vec<(String, String)>,
        /// KEY to reset to the default; repeat for several.
        #[arg(long = "delete")]
        delete: Vec<String>,
    },
    /// Delete a topic and all its records.
    Delete { name: String },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn check(code: i16, message: Option<&StrBytes>, what: &str) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    match message {
        Some(m) if !m.is_empty() => bail!("{what}: {} - {m}", describe_error(code)),
        _ => bail!("{what}: {}", describe_error(code)),
    }
}

pub fn run(args: TopicArgs) -> Result<()> {
    let mut client = Client::connect(&args.bootstrap.bootstrap)?;
    match args.command {
        TopicCommand::Create { name: topic, partitions, replication_factor, configs } => {
            let request = CreateTopicsRequest::default()
                .with_topics(vec![CreatableTopic::default()
                    .with_name(name(&topic))
                    .with_num_partitions(partitions.unwrap_or(-1))
                    .with_replication_factor(replication_factor.unwrap_or(-1))
                    .with_configs(
                        configs
                            .iter()
                            .map(|(k, v)| {
                                CreatableTopicConfig::default()
                                    .with_name(StrBytes::from_string(k.clone()))
                                    .with_value(Some(StrBytes::from_string(v.clone())))
                            })
                            .collect(),
                    )])
                .with_timeout_ms(30_000);
            let resp = client.call_any(ApiKey::CreateTopics, request)?;
            let r = resp.topics.first().context("empty CreateTopics response")?;
            check(r.error_code, r.error_message.as_ref(), &format!("cannot create topic {topic:?}"))?;
            println!("created topic {topic} with {} partitions", r.num_partitions);
        }
        TopicCommand::List => {
            let md = client.metadata(None, false)?;
            let mut names: Vec<String> =
                md.topics.iter().filter_map(|t| t.name.as_ref().map(|n| n.0.to_string())).collect();
            names.sort();
            for n in names {
                println!("{n}");
            }
        }
        TopicCommand::Describe { name: topic } => {
            let md = client.metadata(Some(&[&topic]), false)?;
            let t = md.topics.first().context("empty Metadata response")?;
            check(t.error_code, None, &format!("cannot describe topic {topic:?}"))?;
            println!("topic {topic}  id {}  partitions {}", t.topic_id, t.partitions.len());
            let mut parts: Vec<_> = t.partitions.iter().collect();
            parts.sort_by_key(|p| p.partition_index);
            for p in parts {
                let ids = |v: &[dlog_protocol::kafka_protocol::messages::BrokerId]| {
                    v.iter().map(|b| b.0.to_string()).collect::<Vec<_>>().join(",")
                };
                println!(
                    "  partition {}  leader {}  epoch {}  replicas [{}]  isr [{}]",
                    p.partition_index,
                    p.leader_id.0,
                    p.leader_epoch,
                    ids(&p.replica_nodes),
                    ids(&p.isr_nodes)
                );
            }
            let request = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.clone()))
                .with_configuration_keys(None)]);
            let resp = client.call_any(ApiKey::DescribeConfigs, request)?;
            let r = resp.results.first().context("empty DescribeConfigs response")?;
            check(r.error_code, r.error_message.as_ref(), &format!("cannot describe configs of {topic:?}"))?;
            println!("  configs:");
            for c in &r.configs {
                let source = if c.config_source == 1 { "  (set on topic)" } else { "" };
                println!("    {}={}{}", c.name, c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(), source);
            }
        }
        TopicCommand::AlterConfig { name: topic, set, delete } => {
            if set.is_empty() && delete.is_empty() {
                bail!("nothing to change: give --set KEY=VALUE or --delete KEY");
            }
            let mut configs: Vec<AlterableConfig> = set
                .iter()
                .map(|(k, v)| {
                    AlterableConfig::default()
                        .with_name(StrBytes::from_string(k.clone()))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_string(v.clone())))
                })
                .collect();
            configs.extend(delete.iter().map(|k| {
                AlterableConfig::default().with_name(StrBytes::from_string(k.clone())).with_config_operation(1)
            }));
            let request =
                IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_string(topic.clone()))
                    .with_configs(configs)]);
            let resp = client.call_any(ApiKey::IncrementalAlterConfigs, request)?;
            let r = resp.responses.first().context("empty IncrementalAlterConfigs response")?;
            check(r.error_code, r.error_message.as_ref(), &format!("cannot alter configs of {topic:?}"))?;
            println!("altered configs of {topic}");
        }
        TopicCommand::Delete { name: topic } => {
            let request = DeleteTopicsRequest::default()
                .with_topics(vec![DeleteTopicState::default().with_name(Some(name(&topic)))])
                .with_topic_names(vec![name(&topic)])
                .with_timeout_ms(30_000);
            let resp = client.call_any(ApiKey::DeleteTopics, request)?;
            let r = resp.responses.first().context("empty DeleteTopics response")?;
            check(r.error_code, r.error_message.as_ref(), &format!("cannot delete topic {topic:?}"))?;
            println!("deleted topic {topic}");
        }
    }
    Ok(())
}
