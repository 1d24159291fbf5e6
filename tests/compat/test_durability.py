"""Crash and restart behaviour on a private broker (own data dir)."""

import threading

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import ConfigResource, ResourceType

from helpers import (Rec, ck_admin, ck_conf, ck_consume, ck_produce, ck_watermarks, create_topic,
                     wait_topic, wait_until)

T = 30


def _ends(acked):
    ends = {}
    for p, o, _ in acked:
        ends[p] = max(ends.get(p, 0), o + 1)
    return ends


def test_acked_records_survive_sigkill(own_broker, topic_name):
    """flush.messages=1 + acks=all: every acknowledged record is readable, at its acked
    offset, after SIGKILL and restart on the same data dir."""
    b = own_broker
    partitions = 3
    create_topic(b.bootstrap, topic_name, partitions, {"flush.messages": "1"})

    acked: list[tuple[int, int, bytes]] = []
    failed = []
    stop = threading.Event()
    thread_error = []

    def produce_loop():
        try:
            p = Producer(ck_conf(b.bootstrap, **{"acks": "all", "linger.ms": 2,
                                                "enable.idempotence": False,
                                                "message.timeout.ms": 60000}))

            def cb(err, msg):
                if err is None:
                    acked.append((msg.partition(), msg.offset(), msg.value()))
                else:
                    failed.append(err)
            i = 0
            while not stop.is_set():
                if len(p) > 2000:  # bound the in-flight window
                    p.poll(0.01)
                    continue
                try:
                    p.produce(topic_name, key=f"k{i % 50}".encode(),
                              value=f"durable-{i}".encode() + bytes(i % 7), on_delivery=cb)
                    i += 1
                except BufferError:
                    p.poll(0.01)
                p.poll(0)
            p.purge()
            p.poll(0)
        except Exception as e:  # noqa: BLE001
            thread_error.append(e)

    t = threading.Thread(target=produce_loop, daemon=True)
    t.start()
    try:
        wait_until(lambda: len(acked) >= 3000 or thread_error, 120, "3000 acked records before the kill")
        assert not thread_error, thread_error
        b.kill()  # SIGKILL mid-load
    finally:
        stop.set()
        t.join(60)
    assert not t.is_alive(), "producer thread did not stop"
    assert not thread_error, thread_error
    snapshot = list(acked)
    assert len(snapshot) >= 3000

    b.start()
    wait_topic(b.bootstrap, topic_name, partitions, 60)
    ends = _ends(snapshot)
    for p, end in ends.items():
        lo, hi = ck_watermarks(b.bootstrap, topic_name, p)
        assert lo == 0 and hi >= end, f"partition {p}: watermarks {(lo, hi)}, acked up to {end - 1}"
    got = ck_consume(b.bootstrap, topic_name, ends, timeout=60)
    by_pos = {}
    for p, msgs in got.items():
        offs = [m.offset for m in msgs]
        assert offs[:ends[p]] == list(range(ends[p])), f"partition {p}: offsets not dense after restart"
        for m in msgs:
            by_pos[(p, m.offset)] = m.value
    lost = [(p, o, v) for p, o, v in snapshot if by_pos.get((p, o)) != v]
    assert not lost, (f"{len(lost)} of {len(snapshot)} acked records lost or changed after SIGKILL; "
                      f"first: {[(p, o, v, by_pos.get((p, o))) for p, o, v in lost[:5]]}")

    # the log continues after the recovered end; nothing acked is overwritten
    for p in range(partitions):
        hi = ck_watermarks(b.bootstrap, topic_name, p)[1]
        [(pp, o)] = ck_produce(b.bootstrap, topic_name, [Rec(b"after", b"after-restart")], partition=p)
        assert pp == p and o == hi and o >= ends.get(p, 0)


def test_graceful_restart_keeps_topics_configs_data(own_broker, topic_name):
    b = own_broker
    create_topic(b.bootstrap, topic_name, 2, {"retention.ms": "86400000", "segment.bytes": "1048576"})
    create_topic(b.bootstrap, topic_name + "-b", 1)
    recs = [Rec(f"k{i}".encode(), f"v{i}".encode() * 20, [("h", bytes([i % 256]))]) for i in range(3000)]
    acks = ck_produce(b.bootstrap, topic_name, recs)
    admin = ck_admin(b.bootstrap)
    [fut] = admin.delete_records([TopicPartition(topic_name + "-b", 0, 0)]).values()
    ck_produce(b.bootstrap, topic_name + "-b", [Rec(None, f"b{i}".encode()) for i in range(10)],
               partition=0)
    [fut] = admin.delete_records([TopicPartition(topic_name + "-b", 0, 4)]).values()
    assert fut.result(timeout=T).low_watermark == 4

    rc = b.stop()
    if b.target == "dlog":
        assert rc == 0, f"exit code {rc} after SIGTERM\n{b.log_tail()}"
    b.start()

    wait_topic(b.bootstrap, topic_name, 2, 60)
    wait_topic(b.bootstrap, topic_name + "-b", 1, 60)
    admin = ck_admin(b.bootstrap)
    r = ConfigResource(ResourceType.TOPIC, topic_name)
    cfg = admin.describe_configs([r])[r].result(timeout=T)
    assert cfg["retention.ms"].value == "86400000"
    assert cfg["segment.bytes"].value == "1048576"

    ends = {0: 0, 1: 0}
    for p, o in acks:
        ends[p] = max(ends[p], o + 1)
    got = ck_consume(b.bootstrap, topic_name, ends)
    by_pos = {(m.partition, m.offset): m.ident() for ms in got.values() for m in ms}
    for r_, (p, o) in zip(recs, acks):
        assert by_pos[(p, o)] == r_.ident()
    assert len(by_pos) == len(recs)
    # log start offset from DeleteRecords survives the restart
    assert ck_watermarks(b.bootstrap, topic_name + "-b", 0) == (4, 10)
    # and the end offsets are where they were
    for p in (0, 1):
        assert ck_watermarks(b.bootstrap, topic_name, p) == (0, ends[p])
