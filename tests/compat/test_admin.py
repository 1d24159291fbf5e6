"""Topic administration through both clients' admin APIs, including error codes."""

import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewPartitions, NewTopic, ResourceType)

from helpers import ck_admin, ck_conf, create_topic, topic_partition_count, wait_topic, wait_until

T = 30  # seconds for admin round trips


def ck_error(fut) -> KafkaError:
    with pytest.raises(KafkaException) as ei:
        fut.result(timeout=T)
    err = ei.value.args[0]
    assert isinstance(err, KafkaError), repr(ei.value)
    return err


def ck_describe(admin, topic) -> dict:
    r = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([r], request_timeout=T)[r].result(timeout=T)


def topic_names(admin) -> set:
    return set(admin.list_topics(timeout=T).topics)


# --- confluent-kafka -------------------------------------------------------------------------

def test_ck_create_list_describe_alter_partitions_delete(broker, topic_name):
    admin = ck_admin(broker)
    fs = admin.create_topics([NewTopic(topic_name, num_partitions=3, replication_factor=1,
                                       config={"retention.ms": "3600000",
                                               "max.message.bytes": "2000000"})],
                             operation_timeout=T, request_timeout=T)
    assert fs[topic_name].result(timeout=T) is None

    # list
    wait_topic(broker, topic_name, 3)
    assert topic_name in topic_names(admin)
    md = admin.list_topics(topic=topic_name, timeout=T).topics[topic_name]
    assert sorted(md.partitions) == [0, 1, 2]
    for p in md.partitions.values():
        assert p.leader >= 0 and list(p.replicas) == [p.leader] and list(p.isrs) == [p.leader]

    # describe configs: the two we set are topic overrides, others are defaults
    cfg = ck_describe(admin, topic_name)
    assert cfg["retention.ms"].value == "3600000"
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert not cfg["retention.ms"].is_default
    assert cfg["max.message.bytes"].value == "2000000"
    assert cfg["max.message.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    for name in ("cleanup.policy", "segment.bytes", "flush.messages", "retention.bytes"):
        assert name in cfg, f"describe_configs lacks {name}"
        assert cfg[name].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value, name
    assert cfg["cleanup.policy"].value == "delete"

    # create partitions
    fs = admin.create_partitions([NewPartitions(topic_name, 5)], operation_timeout=T, request_timeout=T)
    assert fs[topic_name].result(timeout=T) is None
    wait_topic(broker, topic_name, 5)

    # delete
    fs = admin.delete_topics([topic_name], operation_timeout=T, request_timeout=T)
    assert fs[topic_name].result(timeout=T) is None
    wait_until(lambda: topic_name not in topic_names(admin), T, f"{topic_name} gone from metadata")
    r = ConfigResource(ResourceType.TOPIC, topic_name)
    err = ck_error(admin.describe_configs([r], request_timeout=T)[r])
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    # the name can be reused
    create_topic(broker, topic_name, 1)


def test_ck_create_validate_only(broker, topic_name):
    admin = ck_admin(broker)
    fs = admin.create_topics([NewTopic(topic_name, num_partitions=2, replication_factor=1,
                                       config={"retention.ms": "1000000"})],
                             validate_only=True, operation_timeout=T, request_timeout=T)
    assert fs[topic_name].result(timeout=T) is None
    # validation errors are still reported in validate_only mode
    bad = topic_name + "-bad"
    fs = admin.create_topics([NewTopic(bad, num_partitions=1, replication_factor=1,
                                       config={"retention.ms": "not-a-number"})],
                             validate_only=True, operation_timeout=T, request_timeout=T)
    assert ck_error(fs[bad]).code() == KafkaError.INVALID_CONFIG
    # barrier: a topic created afterwards is visible, the validated one never appears
    create_topic(broker, topic_name + "-real", 1)
    names = topic_names(admin)
    assert topic_name + "-real" in names
    assert topic_name not in names and bad not in names
    r = ConfigResource(ResourceType.TOPIC, topic_name)
    assert ck_error(admin.describe_configs([r], request_timeout=T)[r]).code() == \
        KafkaError.UNKNOWN_TOPIC_OR_PART


def test_ck_incremental_alter_configs(broker, topic_name):
    admin = ck_admin(broker)
    create_topic(broker, topic_name, 1, {"max.message.bytes": "2000000", "retention.ms": "3600000"})

    def alter(entries, validate_only=False):
        r = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=entries)
        return admin.incremental_alter_configs([r], validate_only=validate_only,
                                               request_timeout=T)[r]

    # validate_only changes nothing
    assert alter([ConfigEntry("retention.ms", "1234567",
                              incremental_operation=AlterConfigOpType.SET)], True).result(T) is None
    assert ck_describe(admin, topic_name)["retention.ms"].value == "3600000"

    # SET one key, DELETE another (back to default), add a third; untouched keys stay
    assert alter([
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
        ConfigEntry("segment.bytes", "4194304", incremental_operation=AlterConfigOpType.SET),
    ]).result(T) is None

    def applied():
        c = ck_describe(admin, topic_name)
        return (c["retention.ms"].value == "7200000"
                and c["segment.bytes"].value == "4194304"
                and c["max.message.bytes"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value
                and c)
    cfg = wait_until(applied, T, "altered configs visible in describe_configs")
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["segment.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["max.message.bytes"].value != "2000000"

    # a second incremental alter does not reset the first one's keys
    assert alter([ConfigEntry("flush.messages", "1",
                              incremental_operation=AlterConfigOpType.SET)]).result(T) is None
    cfg = wait_until(lambda: (c := ck_describe(admin, topic_name))["flush.messages"].value == "1" and c,
                     T, "flush.messages=1 visible")
    assert cfg["retention.ms"].value == "7200000"
    assert cfg["segment.bytes"].value == "4194304"

    # errors
    assert ck_error(alter([ConfigEntry("retention.ms", "abc",
                                       incremental_operation=AlterConfigOpType.SET)])).code() == \
        KafkaError.INVALID_CONFIG
    assert ck_error(alter([ConfigEntry("no.such.config", "1",
                                       incremental_operation=AlterConfigOpType.SET)])).code() == \
        KafkaError.INVALID_CONFIG
    assert ck_describe(admin, topic_name)["retention.ms"].value == "7200000"
    r = ConfigResource(ResourceType.TOPIC, "no-such-topic-" + uuid.uuid4().hex[:8],
                       incremental_configs=[ConfigEntry("retention.ms", "1",
                                                        incremental_operation=AlterConfigOpType.SET)])
    err = ck_error(admin.incremental_alter_configs([r], request_timeout=T)[r])
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


@pytest.mark.parametrize("name,partitions,rf,config,code", [
    ("bad/name", 1, 1, {}, KafkaError.TOPIC_EXCEPTION),
    ("..", 1, 1, {}, KafkaError.TOPIC_EXCEPTION),
    ("a" * 250, 1, 1, {}, KafkaError.TOPIC_EXCEPTION),
    (None, 0, 1, {}, KafkaError.INVALID_PARTITIONS),
    (None, 1, 3, {}, KafkaError.INVALID_REPLICATION_FACTOR),
    (None, 1, 1, {"retention.ms": "abc"}, KafkaError.INVALID_CONFIG),
    (None, 1, 1, {"no.such.config": "1"}, KafkaError.INVALID_CONFIG),
], ids=["slash", "dotdot", "too-long", "zero-partitions", "replication-3", "bad-config-value",
        "unknown-config"])
def test_ck_create_errors(broker, topic_name, name, partitions, rf, config, code):
    admin = ck_admin(broker)
    name = name or topic_name
    fs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=rf,
                                       config=config)], operation_timeout=T, request_timeout=T)
    err = ck_error(fs[name])
    assert err.code() == code, f"got {err.name()}: {err.str()}"
    assert name not in topic_names(admin)


def test_ck_default_partitions(broker, topic_name):
    """num_partitions=-1 / replication_factor=-1 mean 'broker default' (CreateTopics v4+)."""
    admin = ck_admin(broker)
    fs = admin.create_topics([NewTopic(topic_name, num_partitions=-1, replication_factor=-1)],
                             operation_timeout=T, request_timeout=T)
    assert fs[topic_name].result(timeout=T) is None
    n = wait_until(lambda: topic_partition_count(admin, topic_name), T, "topic with leaders")
    assert n >= 1


def test_ck_errors_existing_and_unknown(broker, topic_name):
    admin = ck_admin(broker)
    create_topic(broker, topic_name, 2)
    fs = admin.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)],
                             operation_timeout=T, request_timeout=T)
    assert ck_error(fs[topic_name]).code() == KafkaError.TOPIC_ALREADY_EXISTS
    assert topic_partition_count(admin, topic_name) == 2

    # partitions cannot shrink or stay equal
    for n in (1, 2):
        fs = admin.create_partitions([NewPartitions(topic_name, n)], request_timeout=T)
        assert ck_error(fs[topic_name]).code() == KafkaError.INVALID_PARTITIONS

    unknown = "no-such-topic-" + uuid.uuid4().hex[:8]
    assert ck_error(admin.delete_topics([unknown], request_timeout=T)[unknown]).code() == \
        KafkaError.UNKNOWN_TOPIC_OR_PART
    assert ck_error(admin.create_partitions([NewPartitions(unknown, 3)],
                                            request_timeout=T)[unknown]).code() == \
        KafkaError.UNKNOWN_TOPIC_OR_PART
    r = ConfigResource(ResourceType.TOPIC, unknown)
    assert ck_error(admin.describe_configs([r], request_timeout=T)[r]).code() == \
        KafkaError.UNKNOWN_TOPIC_OR_PART
    # Metadata naming an unknown topic with allow_auto_topic_creation=false (a consumer's
    # request) reports UNKNOWN_TOPIC_OR_PART and creates nothing
    c = Consumer(ck_conf(broker, **{"group.id": "compat-md", "allow.auto.create.topics": False}))
    try:
        md = c.list_topics(topic=unknown, timeout=T).topics[unknown]
        assert md.error is not None and md.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    finally:
        c.close()
    assert unknown not in topic_names(admin)


@pytest.mark.dlog_only
def test_ck_compact_policy_rejected(broker, topic_name):
    """DLog implements cleanup.policy=delete only; compact must be refused, not ignored."""
    admin = ck_admin(broker)
    fs = admin.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1,
                                       config={"cleanup.policy": "compact"})],
                             operation_timeout=T, request_timeout=T)
    assert ck_error(fs[topic_name]).code() == KafkaError.INVALID_CONFIG


# --- kafka-python ----------------------------------------------------------------------------

@pytest.fixture
def kp_admin(broker):
    from kafka.admin import KafkaAdminClient
    a = KafkaAdminClient(bootstrap_servers=broker, request_timeout_ms=T * 1000)
    yield a
    a.close()


def test_kp_admin_lifecycle(broker, kp_admin, topic_name):
    from kafka.admin import AlterConfigOp, ConfigResource as KCR
    a = kp_admin
    # validate_only creates nothing
    a.create_topics({topic_name: {"num_partitions": 2, "replication_factor": 1}},
                    validate_only=True)
    res = a.create_topics({topic_name: {"num_partitions": 2, "replication_factor": 1,
                                        "configs": {"retention.ms": "3600000",
                                                    "segment.bytes": "8388608"}}})
    assert [t["error_code"] for t in res["topics"]] == [0]
    wait_topic(broker, topic_name, 2)
    assert topic_name in a.list_topics()
    desc = [t for t in a.describe_topics([topic_name])]
    assert len(desc) == 1 and desc[0]["error_code"] == 0
    assert sorted(p["partition_index"] for p in desc[0]["partitions"]) == [0, 1]

    def modified():
        return a.describe_configs([KCR("TOPIC", topic_name)])["topic"][topic_name]
    cfg = modified()
    assert cfg["retention.ms"]["value"] == "3600000"
    assert cfg["segment.bytes"]["value"] == "8388608"
    assert cfg["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"

    out = a.alter_configs([KCR("TOPIC", topic_name, {
        "retention.ms": (AlterConfigOp.SET, "7200000"),
        "segment.bytes": (AlterConfigOp.DELETE, None),
    })], incremental=True, raise_on_unknown=False)
    assert out == {"topic": {topic_name: "OK"}}
    cfg = wait_until(lambda: (c := modified()).get("retention.ms", {}).get("value") == "7200000"
                     and "segment.bytes" not in c and c, T, "incremental alter visible")
    assert set(cfg) == {"retention.ms"}, f"unexpected modified configs {sorted(cfg)}"

    all_cfg = a.describe_configs([KCR("TOPIC", topic_name)], config_filter="all")["topic"][topic_name]
    assert {"cleanup.policy", "segment.bytes", "retention.bytes", "flush.messages"} <= set(all_cfg)

    a.create_partitions({topic_name: 4})
    wait_topic(broker, topic_name, 4)

    a.delete_topics([topic_name])
    wait_until(lambda: topic_name not in a.list_topics(), T, "topic deleted")


def test_kp_admin_errors(broker, kp_admin, topic_name):
    import kafka.errors as KE
    a = kp_admin
    a.create_topics({topic_name: {"num_partitions": 1, "replication_factor": 1}})
    wait_topic(broker, topic_name, 1)
    with pytest.raises(KE.TopicAlreadyExistsError):
        a.create_topics({topic_name: {"num_partitions": 1, "replication_factor": 1}})
    with pytest.raises(KE.InvalidTopicError):
        a.create_topics({"bad/name": {"num_partitions": 1, "replication_factor": 1}})
    for n in (0, -2):
        with pytest.raises(KE.InvalidPartitionsError):
            a.create_topics({f"{topic_name}-p{n}": {"num_partitions": n, "replication_factor": 1}})
    with pytest.raises(KE.InvalidReplicationFactorError):
        a.create_topics({f"{topic_name}-rf": {"num_partitions": 1, "replication_factor": 2}})
    with pytest.raises(KE.InvalidPartitionsError):
        a.create_partitions({topic_name: 1})
    unknown = "no-such-topic-" + uuid.uuid4().hex[:8]
    with pytest.raises(KE.UnknownTopicOrPartitionError):
        a.delete_topics([unknown])
    with pytest.raises(KE.UnknownTopicOrPartitionError):
        a.create_partitions({unknown: 2})
    # per-topic results without raising: one ok, one error in the same request
    res = a.create_topics({topic_name: {"num_partitions": 1, "replication_factor": 1},
                           topic_name + "-2": {"num_partitions": 1, "replication_factor": 1}},
                          raise_errors=False)
    codes = {t["name"]: t["error_code"] for t in res["topics"]}
    assert codes == {topic_name: 36, topic_name + "-2": 0}


def test_ck_legacy_alter_configs_replaces_overrides(broker, topic_name):
    """AlterConfigs (the non-incremental API) replaces the topic's whole override set: keys
    not in the request go back to their defaults."""
    import warnings
    admin = ck_admin(broker)
    create_topic(broker, topic_name, 1, {"segment.bytes": "4194304", "retention.ms": "3600000"})
    r = ConfigResource(ResourceType.TOPIC, topic_name, set_config={"retention.ms": "7200000"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fut = admin.alter_configs([r], request_timeout=T)[r]
    assert fut.result(timeout=T) is None

    def applied():
        c = ck_describe(admin, topic_name)
        return (c["retention.ms"].value == "7200000"
                and c["segment.bytes"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value and c)
    cfg = wait_until(applied, T, "AlterConfigs result visible")
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["segment.bytes"].value != "4194304"


# --- answers Kafka 4 admin clients check -------------------------------------------------------

def test_ck_authorized_operations_when_asked(broker, topic_name):
    """KIP-430: asked for, the operations the caller may perform, which with no ACL denying
    anything is every operation of the resource type (librdkafka's 0081 DescribeCluster and
    DescribeTopics check the counts). Not asked for, none are reported."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicCollection, TopicPartition
    admin = ck_admin(broker)
    create_topic(broker, topic_name, 1)
    cluster = admin.describe_cluster(include_authorized_operations=True, request_timeout=T).result(timeout=T)
    assert {op.name for op in cluster.authorized_operations} == {
        "CREATE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE", "ALTER",
        "DESCRIBE"}
    topics = admin.describe_topics(TopicCollection([topic_name]), include_authorized_operations=True,
                                   request_timeout=T)
    described = topics[topic_name].result(timeout=T)
    assert {op.name for op in described.authorized_operations} == {
        "READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"}
    plain = admin.describe_topics(TopicCollection([topic_name]), request_timeout=T)[topic_name].result(timeout=T)
    assert not plain.authorized_operations
    group = f"ops-{uuid.uuid4().hex[:8]}"
    commit = ConsumerGroupTopicPartitions(group, [TopicPartition(topic_name, 0, 0)])
    admin.alter_consumer_group_offsets([commit], request_timeout=T)[group].result(timeout=T)
    groups = admin.describe_consumer_groups([group], include_authorized_operations=True, request_timeout=T)
    g = groups[group].result(timeout=T)
    assert {op.name for op in g.authorized_operations} == {
        "READ", "DESCRIBE", "DELETE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"}


def test_kp_describe_topic_partitions_pages_by_partition(broker, kp_admin, topic_name):
    """DescribeTopicPartitions (KIP-966): topics in name order, paged by a partition
    limit; the cursor names the next partition, or the next topic when a page ends at a
    topic's end; a named unknown topic answers its error without using up the limit."""
    a, b = f"{topic_name}-a", f"{topic_name}-b"
    create_topic(broker, a, 3)
    create_topic(broker, b, 2)
    absent = f"{topic_name}-zz"

    def page(topics, limit, cursor=None):
        r = kp_admin.describe_topic_partitions(topics, response_partition_limit=limit, cursor=cursor)
        got = [(t["name"], t["error_code"], [p["partition_index"] for p in t["partitions"]]) for t in r["topics"]]
        return got, r["next_cursor"]

    got, cursor = page([b, a, absent], 2)
    assert got == [(a, 0, [0, 1])] and cursor == {"topic_name": a, "partition_index": 2}
    got, cursor = page([b, a, absent], 1, cursor)
    assert got == [(a, 0, [2])] and cursor == {"topic_name": b, "partition_index": 0}
    got, cursor = page([b, a, absent], 10, cursor)
    assert got == [(b, 0, [0, 1]), (absent, 3, [])] and cursor is None
    r = kp_admin.describe_topic_partitions([a])
    t = r["topics"][0]
    assert all(p["leader_id"] >= 0 and p["replica_nodes"] and p["isr_nodes"] for p in t["partitions"])
    assert t["topic_authorized_operations"] == 0x0DF8 and not t["is_internal"]


def test_kp_list_config_resources(broker, kp_admin, topic_name):
    """ListConfigResources (KIP-1142): every broker and every topic, among others."""
    create_topic(broker, topic_name, 1)
    listed = kp_admin.list_config_resources()
    assert listed.get("broker"), listed
    assert topic_name in listed.get("topic", [])
