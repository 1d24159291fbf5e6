//! A small blocking Kafka client for the command-line tools: bootstrap, metadata,
//! version negotiation, and one connection per broker. It speaks only the public
//! protocol, so the tools work against any Kafka-compatible broker.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use dlog_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use dlog_protocol::kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use dlog_protocol::kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

const IO_TIMEOUT: Duration = Duration::from_secs(30);
const RESPONSE_MAX_BYTES: usize = 256 * 1024 * 1024;

struct Conn {
    stream: TcpStream,
    next_correlation_id: i32,
    /// api key -> (min, max) the broker supports.
    versions: HashMap<i16, (i16, i16)>,
}

impl Conn {
    fn open(addr: &str) -> Result<Conn> {
        let sock = addr
            .to_socket_addrs()
            .with_context(|| format!("{addr:?} is not a HOST:PORT address"))?
            .next()
            .ok_or_else(|| anyhow!("{addr:?} resolves to no address"))?;
        let stream = TcpStream::connect_timeout(&sock, Duration::from_secs(5))
            .with_context(|| format!("cannot connect to broker {addr}"))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let mut conn = Conn { stream, next_correlation_id: 1, versions: HashMap::new() };
        // ApiVersions v0 is understood by every broker; it lists the rest.
        let resp = conn.call(
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("dlog-cli"))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION"))),
            0,
        )?;
        if resp.error_code != 0 {
            bail!("broker {addr} refused ApiVersions (error {})", resp.error_code);
        }
        conn.versions = resp.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        Ok(conn)
    }

    fn call<R: Request>(&mut self, request: R, version: i16) -> Result<R::Response> {
        let key = ApiKey::try_from(R::KEY).map_err(|()| anyhow!("unknown api key {}", R::KEY))?;
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("dlog-cli")));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0; 4]);
        header.encode(&mut buf, R::header_version(version))?;
        request.encode(&mut buf, version)?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        self.stream.write_all(&buf).with_context(|| format!("sending {key:?}"))?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).with_context(|| format!("reading the {key:?} response"))?;
        let size = i32::from_be_bytes(size);
        if size < 0 || size as usize > RESPONSE_MAX_BYTES {
            bail!("broker sent a {key:?} response of impossible size {size}");
        }
        let mut body = vec![0u8; size as usize];
        self.stream.read_exact(&mut body).with_context(|| format!("reading the {key:?} response"))?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))?;
        if header.correlation_id != correlation_id {
            bail!("broker answered correlation id {} to request {correlation_id}", header.correlation_id);
        }
        R::Response::decode(&mut body, version)
    }

    /// The highest version both sides speak, capped at `preferred`.
    fn version(&self, key: ApiKey, preferred: i16) -> Result<i16> {
        let (min, max) =
            self.versions.get(&(key as i16)).copied().ok_or_else(|| anyhow!("broker does not support {key:?}"))?;
        let ours = key.valid_versions();
        let v = preferred.min(max).min(ours.max);
        if v < min.max(ours.min) {
            bail!("no common version of {key:?}: broker {min}..={max}, client {}..={preferred}", ours.min);
        }
        Ok(v)
    }
}

/// A client bound to one cluster.
pub struct Client {
    bootstrap: String,
    conns: HashMap<i32, Conn>,
    brokers: HashMap<i32, String>,
    bootstrap_conn: Option<Conn>,
}

/// The API versions the tools prefer (all served by Kafka 4.x and DLog).
pub fn preferred_version(key: ApiKey) -> i16 {
    match key {
        ApiKey::Metadata => 12,
        ApiKey::Produce => 9,
        ApiKey::Fetch => 12,
        ApiKey::ListOffsets => 7,
        ApiKey::CreateTopics => 7,
        ApiKey::DeleteTopics => 6,
        ApiKey::DescribeConfigs => 4,
        ApiKey::IncrementalAlterConfigs => 1,
        _ => key.valid_versions().max,
    }
}

impl Client {
    pub fn connect(bootstrap: &str) -> Result<Client> {
        let conn = Conn::open(bootstrap)?;
        Ok(Client {
            bootstrap: bootstrap.to_string(),
            conns: HashMap::new(),
            brokers: HashMap::new(),
            bootstrap_conn: Some(conn),
        })
    }

    /// Sends to the bootstrap broker (admin requests).
    pub fn call_any<R: Request>(&mut self, key: ApiKey, request: R) -> Result<R::Response> {
        let v = self.bootstrap()?.version(key, preferred_version(key))?;
        self.call_version(request, v)
    }

    /// Sends to the bootstrap broker at exactly `version` (tests of old versions).
    pub fn call_version<R: Request>(&mut self, request: R, version: i16) -> Result<R::Response> {
        self.bootstrap()?.call(request, version)
    }

    /// The connection to the bootstrap broker, opened on first use.
    fn bootstrap(&mut self) -> Result<&mut Conn> {
        if self.bootstrap_conn.is_none() {
            self.bootstrap_conn = Some(Conn::open(&self.bootstrap)?);
        }
        Ok(self.bootstrap_conn.as_mut().expect("opened above"))
    }

    /// Sends to broker `node` (partition leaders).
    pub fn call_node<R: Request>(&mut self, node: i32, key: ApiKey, request: R) -> Result<R::Response> {
        if !self.conns.contains_key(&node) {
            let addr = self.brokers.get(&node).cloned().ok_or_else(|| anyhow!("unknown broker {node}"))?;
            self.conns.insert(node, Conn::open(&addr)?);
        }
        let conn = self.conns.get_mut(&node).expect("inserted above");
        let v = conn.version(key, preferred_version(key))?;
        conn.call(request, v)
    }

    /// Fetches metadata for `topics` (None: all) and remembers broker addresses.
    pub fn metadata(&mut self, topics: Option<&[&str]>, auto_create: bool) -> Result<MetadataResponse> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|t| {
                t.iter()
                    .map(|n| {
                        MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(n.to_string()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(auto_create);
        let resp = self.call_any(ApiKey::Metadata, request)?;
        for b in &resp.brokers {
            self.brokers.insert(b.node_id.0, format!("{}:{}", b.host, b.port));
        }
        Ok(resp)
    }
}

/// Describes a Kafka error code for people.
pub fn describe_error(code: i16) -> String {
    match dlog_protocol::errors::ResponseError::try_from_code(code) {
        Some(e) => format!("{e} (error {code})"),
        None => "no error".to_string(),
    }
}
