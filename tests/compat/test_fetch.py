"""Fetch-path semantics: out-of-range offsets, long polling, large records, metadata."""

import os
import threading
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

from helpers import Rec, ck_admin, ck_conf, ck_consume, ck_produce, create_topic, kp_consume


def test_metadata_advertises_listener(broker, topic_name):
    create_topic(broker, topic_name, 2)
    md = ck_admin(broker).list_topics(timeout=30)
    assert len(md.brokers) == 1
    [b] = md.brokers.values()
    assert f"{b.host}:{b.port}" == broker
    assert md.controller_id == b.id
    t = md.topics[topic_name]
    assert sorted(t.partitions) == [0, 1]
    assert all(p.leader == b.id for p in t.partitions.values())
    admin = ck_admin(broker)
    cl = admin.describe_cluster(request_timeout=30).result(timeout=30)
    assert [(n.host, n.port) for n in cl.nodes] == [(b.host, b.port)]
    assert cl.cluster_id


def test_offset_out_of_range(broker, topic_name):
    create_topic(broker, topic_name, 1)
    ck_produce(broker, topic_name, [Rec(None, f"v{i}".encode()) for i in range(10)], partition=0)

    # no reset policy: the client sees the broker's OFFSET_OUT_OF_RANGE as an error
    c = Consumer(ck_conf(broker, **{"group.id": "compat-oor", "enable.auto.commit": False,
                                   "auto.offset.reset": "error"}))
    try:
        c.assign([TopicPartition(topic_name, 0, 1000)])
        err = None
        deadline = time.monotonic() + 30
        while err is None and time.monotonic() < deadline:
            for m in c.consume(10, timeout=0.5):
                assert m.error() is not None, f"got a record at offset {m.offset()}"
                err = m.error()
        assert err is not None, "no error for an out-of-range fetch offset"
        assert err.code() == KafkaError._AUTO_OFFSET_RESET, err
    finally:
        c.close()

    # reset to earliest: reads everything from 0 (kafka-python)
    got = kp_consume(broker, topic_name, {0: 10}, starts={0: 1000})
    assert [m.offset for m in got[0]] == list(range(10))


def test_long_poll_wakes_on_new_data(broker, topic_name):
    """A consumer waiting at the log end gets a record produced later promptly (fetch
    max.wait is long, so only the broker completing the waiting fetch early delivers it)."""
    create_topic(broker, topic_name, 1)
    ck_produce(broker, topic_name, [Rec(None, b"first")], partition=0)
    c = Consumer(ck_conf(broker, **{"group.id": "compat-lp", "enable.auto.commit": False,
                                   "fetch.wait.max.ms": 5000, "fetch.min.bytes": 1}))
    try:
        c.assign([TopicPartition(topic_name, 0, 1)])  # the log end
        assert not c.consume(1, timeout=1.0)  # nothing there: the consumer now long-polls
        t = threading.Timer(0.5, lambda: ck_produce(broker, topic_name, [Rec(None, b"second")],
                                                    partition=0))
        t.start()
        start = time.monotonic()
        got = []
        while not got and time.monotonic() - start < 20:
            got = [m for m in c.consume(1, timeout=0.5) if m.error() is None]
        t.join()
        latency = time.monotonic() - start
        assert got and got[0].value() == b"second" and got[0].offset() == 1
        assert latency < 4.0, f"record arrived {latency:.1f}s after produce started (waiting fetch " \
                              "not completed when data arrived?)"
    finally:
        c.close()


def test_large_records(broker, topic_name):
    """Records close to the default max.message.bytes (1 MiB) round-trip through both
    clients' fetch paths."""
    create_topic(broker, topic_name, 1)
    values = [os.urandom(900 * 1024) for _ in range(12)]
    acks = ck_produce(broker, topic_name, [Rec(f"k{i}".encode(), v) for i, v in enumerate(values)],
                      partition=0, **{"batch.size": 1_000_000, "message.max.bytes": 1_000_000})
    assert acks == [(0, i) for i in range(12)]
    got = kp_consume(broker, topic_name, {0: 12})
    assert [m.value for m in got[0]] == values
    got = ck_consume(broker, topic_name, {0: 12})
    assert [m.value for m in got[0]] == values
