"""Producer retries after a dropped connection: the broker wrote the batch, the client
never heard so and sends it again. With idempotence on, the retry must not write the
records twice; with it off, duplicates are expected (the control that proves the cuts
really made the clients retry). Runs against DLog and Kafka alike."""

from __future__ import annotations

from collections import Counter

import pytest
from confluent_kafka import Producer
from conftest import _new_broker
from helpers import ck_consume, ck_watermarks, create_topic
from kafka import KafkaProducer
from proxy import CuttingProxy

N = 20_000
PARTITIONS = 3


@pytest.fixture
def proxied(tmp_path_factory):
    """A private broker whose clients all go through a CuttingProxy."""
    b = _new_broker(tmp_path_factory.getbasetemp(), "proxied")
    proxy = CuttingProxy(b.port)
    b.advertised_port = proxy.port
    b.start()
    yield b, proxy
    proxy.close()
    if b.alive():
        b.stop()


def ck_produce_values(bootstrap: str, topic: str, idempotent: bool) -> int:
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": idempotent,
                  "linger.ms": 5, "batch.num.messages": 500})
    failed = []
    for i in range(N):
        while True:
            try:
                p.produce(topic, key=f"k{i % 16}", value=str(i),
                          on_delivery=lambda err, msg: err and failed.append(err))
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(120) == 0, "undelivered records"
    assert not failed, f"{len(failed)} records failed, e.g. {failed[:3]}"
    return N


def kp_produce_values(bootstrap: str, topic: str) -> int:
    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)  # idempotent by default (3.x)
    assert p.config["enable_idempotence"], "kafka-python's default producer is idempotent"
    futures = [p.send(topic, key=f"k{i % 16}".encode(), value=str(i).encode()) for i in range(N)]
    p.flush(120)
    for f in futures:
        f.get(timeout=1)
    p.close()
    return N


def log_values(b, topic) -> Counter:
    ends = {p: ck_watermarks(b.bootstrap, topic, p)[1] for p in range(PARTITIONS)}
    got = ck_consume(b.bootstrap, topic, ends)
    for p, recs in got.items():
        assert [g.offset for g in recs] == list(range(ends[p])), f"partition {p} has gaps"
    return Counter(int(g.value) for recs in got.values() for g in recs)


@pytest.mark.parametrize("client", ["librdkafka", "kafka-python"])
def test_idempotent_retries_after_cut_connections_write_once(proxied, topic_name, client):
    b, proxy = proxied
    create_topic(b.bootstrap, topic_name, PARTITIONS)
    proxy.cut_after_produce(every=3, limit=12)
    if client == "librdkafka":
        ck_produce_values(b.bootstrap, topic_name, idempotent=True)
    else:
        kp_produce_values(b.bootstrap, topic_name)
    assert proxy.cuts >= 3, f"only {proxy.cuts} connections were cut: the test proved nothing"
    values = log_values(b, topic_name)
    assert set(values) == set(range(N)), f"{N - len(values)} acknowledged records missing"
    dups = {v: c for v, c in values.items() if c > 1}
    assert not dups, f"{len(dups)} records written twice after {proxy.cuts} cuts, e.g. {list(dups.items())[:5]}"


def test_control_without_idempotence_cuts_do_duplicate(proxied, topic_name):
    """The control: the same cuts with idempotence off write retried batches twice,
    so the test above would see a broker that ignored producer sequences."""
    b, proxy = proxied
    create_topic(b.bootstrap, topic_name, PARTITIONS)
    proxy.cut_after_produce(every=3, limit=12)
    ck_produce_values(b.bootstrap, topic_name, idempotent=False)
    assert proxy.cuts >= 3, f"only {proxy.cuts} connections were cut"
    values = log_values(b, topic_name)
    assert set(values) == set(range(N))
    assert any(c > 1 for c in values.values()), "no duplicates without idempotence: the cuts made no retries"
