"""Produce with one client, consume with the other, per compression codec: byte-exact
keys/values/headers, per-partition offsets dense from 0."""

import time

import pytest

from helpers import (check_dense_and_exact, ck_consume, ck_produce, create_topic, gen_records,
                     kp_consume, kp_produce)

N = 100_000
PARTITIONS = 4
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("direction", ["confluent-to-kafkapython", "kafkapython-to-confluent"])
def test_roundtrip(broker, topic_name, codec, direction):
    create_topic(broker, topic_name, PARTITIONS)
    recs = gen_records(N, seed=hash((codec, direction)) & 0xFFFF)
    t0 = time.monotonic()
    if direction == "confluent-to-kafkapython":
        acks = ck_produce(broker, topic_name, recs, compression=codec)
    else:
        # idempotence (kafka-python 3's default) is covered by test_idempotence.py; here the
        # subject is the codec, so both producers run non-idempotent
        acks = kp_produce(broker, topic_name, recs, compression=codec, enable_idempotence=False)
    t1 = time.monotonic()
    ends = {p: 0 for p in range(PARTITIONS)}
    for p, o in acks:
        ends[p] = max(ends[p], o + 1)
    if direction == "confluent-to-kafkapython":
        got = kp_consume(broker, topic_name, ends)
    else:
        got = ck_consume(broker, topic_name, ends)
    t2 = time.monotonic()
    print(f"{codec} {direction}: produce {t1 - t0:.1f}s consume {t2 - t1:.1f}s")
    assert sum(1 for e in ends.values() if e > 0) >= 2, f"keys spread over too few partitions: {ends}"
    check_dense_and_exact(recs, acks, got)
