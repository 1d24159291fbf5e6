"""Produce-path semantics: acks levels, record size limit, LogAppendTime topics."""

import time

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, KafkaError, Producer, TopicPartition

from helpers import Rec, ck_conf, ck_consume, ck_produce, ck_watermarks, create_topic, wait_until


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks_levels(broker, topic_name, acks):
    create_topic(broker, topic_name, 1)
    n = 500
    recs = [Rec(f"k{i}".encode(), f"v{i}".encode()) for i in range(n)]
    ck_produce(broker, topic_name, recs, partition=0, acks=acks)
    # acks=0 gets no offsets back: wait for the log to reach n, then compare content
    wait_until(lambda: ck_watermarks(broker, topic_name, 0)[1] == n, 30, f"{n} records in the log")
    got = ck_consume(broker, topic_name, {0: n})
    assert [(m.offset, m.key, m.value) for m in got[0]] == \
        [(i, f"k{i}".encode(), f"v{i}".encode()) for i in range(n)]


def test_record_larger_than_max_message_bytes(broker, topic_name):
    create_topic(broker, topic_name, 1, {"max.message.bytes": "2000"})
    p = Producer(ck_conf(broker, **{"acks": "all", "linger.ms": 0}))
    results = []
    p.produce(topic_name, value=b"small", partition=0, on_delivery=lambda e, m: results.append(e))
    p.flush(30)
    p.produce(topic_name, value=b"x" * 5000, partition=0, on_delivery=lambda e, m: results.append(e))
    p.flush(30)
    p.produce(topic_name, value=b"small again", partition=0,
              on_delivery=lambda e, m: results.append(e))
    p.flush(30)
    assert len(results) == 3
    assert results[0] is None and results[2] is None, results
    assert results[1] is not None and results[1].code() == KafkaError.MSG_SIZE_TOO_LARGE, results[1]
    assert ck_watermarks(broker, topic_name, 0) == (0, 2)
    got = ck_consume(broker, topic_name, {0: 2})
    assert [m.value for m in got[0]] == [b"small", b"small again"]


def test_log_append_time(broker, topic_name):
    create_topic(broker, topic_name, 1, {"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    ck_produce(broker, topic_name, [Rec(b"k", b"v", [], 1000), Rec(b"k", b"w", [], 2000)], partition=0)
    after = int(time.time() * 1000)
    c = Consumer(ck_conf(broker, **{"group.id": "compat-lat", "enable.auto.commit": False}))
    try:
        c.assign([TopicPartition(topic_name, 0, 0)])
        msgs = []
        deadline = time.monotonic() + 30
        while len(msgs) < 2 and time.monotonic() < deadline:
            msgs += [m for m in c.consume(2, timeout=0.5) if m.error() is None]
    finally:
        c.close()
    assert len(msgs) == 2
    for m in msgs:
        ts_type, ts = m.timestamp()
        assert ts_type == TIMESTAMP_LOG_APPEND_TIME
        assert before - 1000 <= ts <= after + 1000, (before, ts, after)
