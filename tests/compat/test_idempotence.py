"""Idempotent producers: the default of kafka-python 3.x (and of the Java client since 3.0),
and librdkafka's enable.idempotence. Needs InitProducerId and per-producer sequence checks."""

import socket
import struct
import time

import pytest

from helpers import (check_dense_and_exact, ck_consume, ck_produce, ck_watermarks, create_topic,
                     gen_records, kp_consume, kp_produce)

N = 5000


def test_kafka_python_default_producer(broker, topic_name):
    """kafka-python 3 with no producer options is idempotent (sends InitProducerId)."""
    create_topic(broker, topic_name, 3)
    recs = gen_records(N, seed=11)
    acks = kp_produce(broker, topic_name, recs)
    ends = {p: 0 for p in range(3)}
    for p, o in acks:
        ends[p] = max(ends[p], o + 1)
    check_dense_and_exact(recs, acks, ck_consume(broker, topic_name, ends))


def test_confluent_idempotent_producer(broker, topic_name):
    create_topic(broker, topic_name, 3)
    recs = gen_records(N, seed=12)
    acks = ck_produce(broker, topic_name, recs, compression="lz4", **{"enable.idempotence": True})
    ends = {p: 0 for p in range(3)}
    for p, o in acks:
        ends[p] = max(ends[p], o + 1)
    check_dense_and_exact(recs, acks, kp_consume(broker, topic_name, ends))


# --- raw protocol: duplicate and out-of-order batches -----------------------------------------

class Raw:
    def __init__(self, bootstrap):
        host, port = bootstrap.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=15)
        self.corr = 0

    def close(self):
        self.s.close()

    def _recv(self, n):
        buf = b""
        while len(buf) < n:
            c = self.s.recv(n - len(buf))
            assert c, "broker closed the connection"
            buf += c
        return buf

    def call(self, api_key, version, body: bytes, flexible: bool = False) -> bytes:
        """Returns the response body after the response header. Non-flexible requests use
        header v1, flexible ones header v2 (and the response header carries tagged fields)."""
        self.corr += 1
        client = b"compat-raw"
        hdr = struct.pack(">hhih", api_key, version, self.corr, len(client)) + client
        if flexible:
            hdr += b"\x00"  # no tagged fields
        msg = hdr + body
        self.s.sendall(struct.pack(">i", len(msg)) + msg)
        (size,) = struct.unpack(">i", self._recv(4))
        resp = self._recv(size)
        (corr,) = struct.unpack(">i", resp[:4])
        assert corr == self.corr
        if flexible and api_key != 18:
            assert resp[4] == 0, "unexpected tagged fields in response header"
            return resp[5:]
        return resp[4:]

    def api_versions(self) -> dict:
        r = self.call(18, 0, b"")
        err, n = struct.unpack(">hi", r[:6])
        assert err == 0
        out = {}
        for i in range(n):
            k, lo, hi = struct.unpack(">hhh", r[6 + 6 * i: 12 + 6 * i])
            out[k] = (lo, hi)
        return out

    def init_producer_id(self):
        versions = self.api_versions()
        assert 22 in versions, "broker does not advertise InitProducerId (api key 22) in ApiVersions"
        lo, hi = versions[22]
        v = min(hi, 4)
        assert v >= lo, f"InitProducerId versions {lo}..{hi}: none this test speaks (0..4)"
        if v <= 1:
            body = struct.pack(">hi", -1, 60000)  # transactional_id=null, timeout
        else:  # flexible: compact nullable string (0 = null), timeout, [v3+ pid, epoch], tags
            body = b"\x00" + struct.pack(">i", 60000)
            if v >= 3:
                body += struct.pack(">qh", -1, -1)
            body += b"\x00"
        r = self.call(22, v, body, flexible=v >= 2)
        _throttle, err, pid, epoch = struct.unpack(">ihqh", r[:16])
        return err, pid, epoch

    def produce(self, topic: str, partition: int, batch: bytes):
        lo, hi = self.api_versions()[0]
        assert lo <= 3 <= hi, f"Produce v3 not supported (broker: {lo}..{hi})"
        t = topic.encode()
        body = (struct.pack(">hhi", -1, -1, 30000)  # transactional_id null, acks=all, timeout
                + struct.pack(">ih", 1, len(t)) + t
                + struct.pack(">ii", 1, partition)
                + struct.pack(">i", len(batch)) + batch)
        r = self.call(0, 3, body)
        # topics[1]: name, partitions[1]: index, error, base_offset, log_append_time; throttle
        (n_topics,) = struct.unpack(">i", r[:4])
        assert n_topics == 1
        (name_len,) = struct.unpack(">h", r[4:6])
        pos = 6 + name_len
        (n_parts,) = struct.unpack(">i", r[pos:pos + 4])
        assert n_parts == 1
        idx, err, base, _lat = struct.unpack(">ihqq", r[pos + 4:pos + 26])
        assert idx == partition
        return err, base


def build_batch(pid, epoch, base_seq, values):
    from kafka.record.default_records import DefaultRecordBatchBuilder
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                  producer_id=pid, producer_epoch=epoch, base_sequence=base_seq,
                                  batch_size=1 << 20)
    now = int(time.time() * 1000)
    for i, v in enumerate(values):
        assert b.append(i, timestamp=now, key=None, value=v, headers=[]) is not None
    return bytes(b.build())


def test_duplicate_and_out_of_order_batches(broker, topic_name):
    create_topic(broker, topic_name, 1)
    raw = Raw(broker)
    try:
        err, pid, epoch = raw.init_producer_id()
        assert err == 0 and pid >= 0 and epoch >= 0, (err, pid, epoch)

        b0 = build_batch(pid, epoch, 0, [b"a0", b"a1", b"a2"])
        assert raw.produce(topic_name, 0, b0) == (0, 0)
        # a retried (identical) batch is recognised: success with the original offset, not
        # appended a second time
        assert raw.produce(topic_name, 0, b0) == (0, 0)
        b1 = build_batch(pid, epoch, 3, [b"b3", b"b4"])
        assert raw.produce(topic_name, 0, b1) == (0, 3)
        # a gap in the sequence is refused with OUT_OF_ORDER_SEQUENCE_NUMBER (45)
        gap = build_batch(pid, epoch, 9, [b"gap"])
        err, _ = raw.produce(topic_name, 0, gap)
        assert err == 45, f"expected OUT_OF_ORDER_SEQUENCE_NUMBER (45), got {err}"
        b2 = build_batch(pid, epoch, 5, [b"c5"])
        assert raw.produce(topic_name, 0, b2) == (0, 5)
    finally:
        raw.close()
    assert ck_watermarks(broker, topic_name, 0) == (0, 6)
    got = ck_consume(broker, topic_name, {0: 6})
    assert [m.value for m in got[0]] == [b"a0", b"a1", b"a2", b"b3", b"b4", b"c5"]
