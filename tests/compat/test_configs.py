"""Topic configs as Kafka 4.x has them: every documented name accepted with Kafka's
types and bounds, listed by DescribeConfigs with source, synonyms and documentation;
what DLog cannot do yet refused as such; compression.type honoured by recompression."""

from __future__ import annotations

import socket
import struct

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import ConfigResource, NewTopic
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition

from helpers import ck_admin, ck_conf, ck_produce, create_topic, gen_records

# Kafka 4.1's topic configs (LogConfig), but the internal one.
KAFKA_TOPIC_CONFIGS = {
    "cleanup.policy", "compression.gzip.level", "compression.lz4.level", "compression.type",
    "compression.zstd.level", "delete.retention.ms", "file.delete.delay.ms", "flush.messages", "flush.ms",
    "follower.replication.throttled.replicas", "index.interval.bytes", "leader.replication.throttled.replicas",
    "local.retention.bytes", "local.retention.ms", "max.compaction.lag.ms", "max.message.bytes",
    "message.timestamp.after.max.ms", "message.timestamp.before.max.ms", "message.timestamp.type",
    "min.cleanable.dirty.ratio", "min.compaction.lag.ms", "min.insync.replicas", "preallocate",
    "remote.log.copy.disable", "remote.log.delete.on.disable", "remote.storage.enable", "retention.bytes",
    "retention.ms", "segment.bytes", "segment.index.bytes", "segment.jitter.ms", "segment.ms",
    "unclean.leader.election.enable",
}

# Values other than the defaults, each valid in Kafka and supported by DLog.
SET = {
    "compression.type": "lz4", "compression.lz4.level": "5", "compression.gzip.level": "4",
    "compression.zstd.level": "7", "delete.retention.ms": "1000", "file.delete.delay.ms": "1000",
    "flush.messages": "100000", "index.interval.bytes": "8192", "max.compaction.lag.ms": "100000",
    "min.compaction.lag.ms": "10", "min.cleanable.dirty.ratio": "0.25", "preallocate": "true",
    "segment.index.bytes": "1048576", "segment.jitter.ms": "10", "retention.bytes": "100000000",
    "segment.ms": "100000", "message.timestamp.type": "LogAppendTime", "max.message.bytes": "2000000",
}


# Kafka's ConfigSource ids.
TOPIC_CONFIG, STATIC_BROKER, DEFAULT = 1, 4, 5


def describe(bootstrap: str, topic: str) -> dict:
    """DescribeConfigs of `topic` with synonyms and documentation (kafka-python, whose
    request class asks for both): config name -> its entry as a dict, the source and the
    synonyms' sources as Kafka's ids."""
    from kafka import KafkaAdminClient
    from kafka.protocol.admin.configs import DescribeConfigsRequest

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        request = DescribeConfigsRequest(resources=[(2, topic, None)], include_synonyms=True,
                                         include_documentation=True)
        response = admin._manager.run(admin._manager.send, request)
    finally:
        admin.close()
    (result,) = response.results
    assert result.error_code == 0, result
    return {c.name: c.to_dict() for c in result.configs}


def test_every_kafka_topic_config_is_accepted_listed_and_documented(broker, topic_name):
    create_topic(broker, topic_name, 1, SET)
    cfg = describe(broker, topic_name)
    assert KAFKA_TOPIC_CONFIGS <= set(cfg), sorted(KAFKA_TOPIC_CONFIGS - set(cfg))
    for name, value in SET.items():
        entry = cfg[name]
        assert entry["value"] == value, (name, entry)
        assert entry["config_source"] == TOPIC_CONFIG, (name, entry)
        assert entry["synonyms"][0] == {"name": name, "value": value, "source": TOPIC_CONFIG}, (name, entry)
        assert not entry["read_only"] and not entry["is_sensitive"], entry
    # a default: DEFAULT_CONFIG, with Kafka's broker synonym behind it
    policy = cfg["cleanup.policy"]
    assert (policy["value"], policy["config_source"], policy["config_type"]) == ("delete", DEFAULT, 7), policy
    assert {"name": "log.cleanup.policy", "value": "delete", "source": DEFAULT} in policy["synonyms"], policy
    assert cfg["segment.bytes"]["value"] == "1073741824"
    undocumented = sorted(n for n in KAFKA_TOPIC_CONFIGS if not cfg[n]["documentation"])
    assert not undocumented, undocumented


@pytest.mark.parametrize("name,value,says", [
    ("segment.bytes", "1000", "Value must be at least 1048576"),
    ("compression.type", "brotli", "String must be one of"),
    ("compression.gzip.level", "10", "between 1 and 9 or equal to -1"),
    ("min.cleanable.dirty.ratio", "1.5", "no more than 1"),
    ("retention.ms", "soon", "Not a number"),
    ("preallocate", "maybe", "either true or false"),
    ("message.downconversion.enable", "true", "Unknown topic config"),
    ("no.such.config", "1", "Unknown topic config"),
])
def test_bad_configs_are_refused_in_kafkas_words(broker, topic_name, name, value, says):
    admin = ck_admin(broker)
    f = admin.create_topics([NewTopic(topic_name, 1, 1, config={name: value})])[topic_name]
    with pytest.raises(Exception) as e:
        f.result(30)
    assert "INVALID_CONFIG" in str(e.value) or "InvalidConfig" in str(e.value), e.value
    assert says in str(e.value), e.value


@pytest.mark.dlog_only
@pytest.mark.parametrize("name,value", [
    ("cleanup.policy", "compact"), ("cleanup.policy", "compact,delete"), ("remote.storage.enable", "true"),
    ("local.retention.ms", "1000"), ("leader.replication.throttled.replicas", "*"),
])
def test_what_dlog_cannot_do_yet_is_refused_as_not_yet_supported(broker, topic_name, name, value):
    admin = ck_admin(broker)
    f = admin.create_topics([NewTopic(topic_name, 1, 1, config={name: value})])[topic_name]
    with pytest.raises(Exception) as e:
        f.result(30)
    assert "not yet supported" in str(e.value) and "INVALID_CONFIG" in str(e.value), e.value
    # and the same through IncrementalAlterConfigs on a topic that exists
    create_topic(broker, topic_name, 1)
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry
    res = ConfigResource(ConfigResource.Type.TOPIC, topic_name,
                         incremental_configs=[ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(Exception) as e:
        admin.incremental_alter_configs([res])[res].result(30)
    assert "not yet supported" in str(e.value), e.value


def fetched_codecs(bootstrap: str, topic: str) -> list[int]:
    """The codec of every batch a raw Fetch v4 of partition 0 from offset 0 returns."""
    host, port = bootstrap.rsplit(":", 1)
    name = topic.encode()
    body = (struct.pack(">hhih", 1, 4, 9, -1) + struct.pack(">iiiib", -1, 0, 1, 16 << 20, 0)
            + struct.pack(">ih", 1, len(name)) + name + struct.pack(">iiqi", 1, 0, 0, 16 << 20))
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
            chunk = s.recv(1 << 20)
            assert chunk, "closed mid-answer"
            buf += chunk
    resp = buf[4:]
    at = 8 + 4
    (name_len,) = struct.unpack(">h", resp[at:at + 2])
    at += 2 + name_len + 4
    _p, err, _hw, _lso, aborted = struct.unpack(">ihqqi", resp[at:at + 26])
    assert err == 0, err
    at += 26 + max(aborted, 0) * 16
    (size,) = struct.unpack(">i", resp[at:at + 4])
    records = resp[at + 4:at + 4 + size]
    codecs = []
    while len(records) >= 61:
        (length,) = struct.unpack(">i", records[8:12])
        if len(records) < 12 + length:
            break
        (attributes,) = struct.unpack(">h", records[21:23])
        codecs.append(attributes & 7)
        records = records[12 + length:]
    return codecs


CODEC_IDS = {"uncompressed": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


@pytest.mark.parametrize("topic_codec,producer_codec", [
    ("zstd", "none"), ("gzip", "none"), ("lz4", "snappy"), ("snappy", "gzip"), ("uncompressed", "zstd"),
    ("producer", "lz4"),
])
def test_compression_type_recompresses_what_the_producer_sent(broker, topic_name, topic_codec, producer_codec):
    """A codec named by compression.type is the codec every stored batch has, whatever
    the producer used; `producer` keeps the producer's. Both clients read the records
    back unchanged."""
    create_topic(broker, topic_name, 1, {"compression.type": topic_codec})
    recs = gen_records(300, seed=7)
    acks = ck_produce(broker, topic_name, recs, compression=producer_codec, partition=0)
    assert len(acks) == 300
    want = CODEC_IDS.get(topic_codec, CODEC_IDS["uncompressed" if producer_codec == "none" else producer_codec])
    codecs = fetched_codecs(broker, topic_name)
    assert codecs and set(codecs) == {want}, codecs

    c = Consumer(ck_conf(broker, **{"group.id": f"{topic_name}-ck", "auto.offset.reset": "earliest"}))
    got = []
    try:
        c.assign([TopicPartition(topic_name, 0, 0)])
        while len(got) < 300:
            m = c.poll(10)
            assert m is not None, f"librdkafka read {len(got)} of 300"
            assert m.error() is None, m.error()
            got.append((m.key(), m.value()))
    finally:
        c.close()
    assert got == [(r.key, r.value) for r in recs]

    k = KafkaConsumer(bootstrap_servers=broker, auto_offset_reset="earliest", consumer_timeout_ms=10000)
    try:
        k.assign([KTopicPartition(topic_name, 0)])
        got_kp = [(m.key, m.value) for _, m in zip(range(300), k)]
    finally:
        k.close()
    assert got_kp == [(r.key, r.value) for r in recs]


@pytest.mark.dlog_only
@pytest.mark.broker_env({"DLOG_TOPIC_DEFAULTS": "log.retention.hours=24,log.segment.bytes=2097152,compression.type=zstd"})
def test_broker_defaults_come_from_kafkas_broker_config_names(own_broker, topic_name):
    """`--topic-default` (here DLOG_TOPIC_DEFAULTS) takes Kafka's broker names, hours
    converted; a topic that sets nothing shows them as STATIC_BROKER_CONFIG, with the
    broker name as synonym, and a topic override still wins."""
    create_topic(own_broker.bootstrap, topic_name, 1, {"segment.bytes": "4194304"})
    cfg = describe(own_broker.bootstrap, topic_name)
    retention = cfg["retention.ms"]
    assert (retention["value"], retention["config_source"]) == (str(24 * 3600 * 1000), STATIC_BROKER), retention
    assert {"name": "log.retention.hours", "value": "24", "source": STATIC_BROKER} in retention["synonyms"], retention
    assert cfg["compression.type"]["value"] == "zstd"
    segment = cfg["segment.bytes"]
    assert (segment["value"], segment["config_source"]) == ("4194304", TOPIC_CONFIG), segment
    assert [s["source"] for s in segment["synonyms"]][:2] == [TOPIC_CONFIG, STATIC_BROKER], segment
    ck_produce(own_broker.bootstrap, topic_name, gen_records(20, seed=3), partition=0)
    assert set(fetched_codecs(own_broker.bootstrap, topic_name)) == {4}, "the broker default recompresses"
