"""ListOffsets (earliest / latest / by timestamp / max timestamp) and DeleteRecords."""

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from helpers import (Rec, ck_admin, ck_conf, ck_consume, ck_produce, ck_watermarks, create_topic,
                     kp_consume, wait_until)

T = 30
# CreateTime timestamps, deliberately not monotonic; two produce calls -> at least two batches
TS_BATCH1 = [1000, 2000, 5000, 3000, 4000]
TS_BATCH2 = [6000, 9000, 7000, 8000, 10000]
TS = TS_BATCH1 + TS_BATCH2


def _recs(tss):
    return [Rec(f"k{ts}".encode(), f"v{ts}".encode(), [], ts) for ts in tss]


@pytest.fixture
def ts_topic(broker, topic_name):
    # retention.ms=-1: the timestamps are from 1970 and must not be subject to time retention
    create_topic(broker, topic_name, 1, {"retention.ms": "-1"})
    acks = ck_produce(broker, topic_name, _recs(TS_BATCH1), partition=0)
    acks += ck_produce(broker, topic_name, _recs(TS_BATCH2), partition=0)
    assert acks == [(0, i) for i in range(len(TS))]
    return topic_name


def _ck_list(broker, topic, spec):
    admin = ck_admin(broker)
    tp = TopicPartition(topic, 0)
    return admin.list_offsets({tp: spec}, request_timeout=T)[tp].result(timeout=T)


def test_timestamps_preserved(broker, ts_topic):
    got = kp_consume(broker, ts_topic, {0: len(TS)})
    assert [m.timestamp for m in got[0]] == TS
    got = ck_consume(broker, ts_topic, {0: len(TS)})
    assert [m.timestamp for m in got[0]] == TS


def test_list_offsets_earliest_latest(broker, ts_topic):
    assert _ck_list(broker, ts_topic, OffsetSpec.earliest()).offset == 0
    assert _ck_list(broker, ts_topic, OffsetSpec.latest()).offset == len(TS)
    assert ck_watermarks(broker, ts_topic, 0) == (0, len(TS))

    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    c = KafkaConsumer(bootstrap_servers=broker, group_id=None)
    try:
        tp = KTP(ts_topic, 0)
        assert c.beginning_offsets([tp]) == {tp: 0}
        assert c.end_offsets([tp]) == {tp: len(TS)}
    finally:
        c.close()


@pytest.mark.parametrize("query,expected", [
    (0, 0), (1000, 0), (1001, 1), (2500, 2), (5000, 2), (5001, 5), (6000, 5), (6500, 6),
    (9500, 9), (10000, 9), (10001, None)])
def test_offsets_for_times(broker, ts_topic, query, expected):
    """First offset whose timestamp >= query (records are not timestamp-ordered)."""
    # confluent-kafka consumer
    c = Consumer(ck_conf(broker, **{"group.id": "compat-oft"}))
    try:
        [res] = c.offsets_for_times([TopicPartition(ts_topic, 0, query)], timeout=T)
        assert res.error is None
        assert res.offset == (-1 if expected is None else expected)
    finally:
        c.close()
    # confluent-kafka admin
    r = _ck_list(broker, ts_topic, OffsetSpec.for_timestamp(query))
    if expected is None:
        assert r.offset == -1
    else:
        assert (r.offset, r.timestamp) == (expected, TS[expected])
    # kafka-python consumer
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    kc = KafkaConsumer(bootstrap_servers=broker, group_id=None)
    try:
        tp = KTP(ts_topic, 0)
        out = kc.offsets_for_times({tp: query})
        if expected is None:
            assert out[tp] is None
        else:
            assert (out[tp].offset, out[tp].timestamp) == (expected, TS[expected])
    finally:
        kc.close()


def test_list_offsets_max_timestamp(broker, ts_topic):
    r = _ck_list(broker, ts_topic, OffsetSpec.max_timestamp())
    assert (r.offset, r.timestamp) == (TS.index(max(TS)), max(TS))
    # a later record with a smaller timestamp does not change it; a larger one does
    ck_produce(broker, ts_topic, _recs([500]), partition=0)
    r = _ck_list(broker, ts_topic, OffsetSpec.max_timestamp())
    assert (r.offset, r.timestamp) == (TS.index(max(TS)), max(TS))
    ck_produce(broker, ts_topic, _recs([20000, 15000]), partition=0)
    r = _ck_list(broker, ts_topic, OffsetSpec.max_timestamp())
    assert (r.offset, r.timestamp) == (len(TS) + 1, 20000)


def test_list_offsets_empty_partition(broker, topic_name):
    create_topic(broker, topic_name, 1)
    assert _ck_list(broker, topic_name, OffsetSpec.earliest()).offset == 0
    assert _ck_list(broker, topic_name, OffsetSpec.latest()).offset == 0
    assert _ck_list(broker, topic_name, OffsetSpec.for_timestamp(0)).offset == -1


# --- DeleteRecords ----------------------------------------------------------------------------

def test_delete_records(broker, topic_name):
    create_topic(broker, topic_name, 2)
    n = 100
    for p in (0, 1):
        recs = [Rec(f"k{i}".encode(), f"p{p}-v{i}".encode()) for i in range(n)]
        acks = ck_produce(broker, topic_name, recs, partition=p)
        assert acks == [(p, i) for i in range(n)]
    admin = ck_admin(broker)

    # p0: delete below 40
    tp0 = TopicPartition(topic_name, 0, 40)
    res = admin.delete_records([tp0], request_timeout=T)
    [fut] = res.values()
    assert fut.result(timeout=T).low_watermark == 40
    assert ck_watermarks(broker, topic_name, 0) == (40, n)
    assert _ck_list(broker, topic_name, OffsetSpec.earliest()).offset == 40
    # untouched partition
    assert ck_watermarks(broker, topic_name, 1) == (0, n)

    # consuming from the beginning starts at the new log start (both clients)
    got = ck_consume(broker, topic_name, {0: n})
    assert [m.offset for m in got[0]] == list(range(40, n))
    assert got[0][0].value == b"p0-v40"
    got = kp_consume(broker, topic_name, {0: n})
    assert [m.offset for m in got[0]] == list(range(40, n))

    # deleting below the current start is a no-op that reports the current start
    [fut] = admin.delete_records([TopicPartition(topic_name, 0, 10)], request_timeout=T).values()
    assert fut.result(timeout=T).low_watermark == 40

    # p1: -1 means "up to the high watermark"
    [fut] = admin.delete_records([TopicPartition(topic_name, 1, -1)], request_timeout=T).values()
    assert fut.result(timeout=T).low_watermark == n
    assert ck_watermarks(broker, topic_name, 1) == (n, n)

    # beyond the high watermark: OFFSET_OUT_OF_RANGE, nothing changes
    [fut] = admin.delete_records([TopicPartition(topic_name, 0, n + 5)], request_timeout=T).values()
    with pytest.raises(KafkaException) as ei:
        fut.result(timeout=T)
    assert ei.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    assert ck_watermarks(broker, topic_name, 0) == (40, n)

    # new records continue at the old end
    acks = ck_produce(broker, topic_name, [Rec(b"k", b"after")], partition=1)
    assert acks == [(1, n)]
    got = ck_consume(broker, topic_name, {1: n + 1})
    assert [(m.offset, m.value) for m in got[1]] == [(n, b"after")]


def test_delete_records_kafka_python(broker, topic_name):
    from kafka.admin import KafkaAdminClient
    from kafka import TopicPartition as KTP
    create_topic(broker, topic_name, 1)
    ck_produce(broker, topic_name, [Rec(None, f"v{i}".encode()) for i in range(50)], partition=0)
    a = KafkaAdminClient(bootstrap_servers=broker, request_timeout_ms=T * 1000)
    try:
        out = a.delete_records({KTP(topic_name, 0): 25})
        assert out[KTP(topic_name, 0)]["low_watermark"] == 25
    finally:
        a.close()
    wait_until(lambda: ck_watermarks(broker, topic_name, 0) == (25, 50), T, "low watermark 25")
    got = kp_consume(broker, topic_name, {0: 50})
    assert [m.value for m in got[0]] == [f"v{i}".encode() for i in range(25, 50)]
