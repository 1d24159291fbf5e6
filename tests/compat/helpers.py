"""Client-side helpers shared by the compat tests (confluent-kafka and kafka-python)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka import OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic

DEFAULT_TIMEOUT = 30.0


class Deadline:
    def __init__(self, seconds: float, what: str):
        self.end = time.monotonic() + seconds
        self.seconds = seconds
        self.what = what

    def expired(self) -> bool:
        return time.monotonic() > self.end

    def check(self, detail: str = ""):
        if self.expired():
            raise AssertionError(f"timed out after {self.seconds}s waiting for {self.what}"
                                 + (f": {detail}" if detail else ""))


def wait_until(pred, timeout: float, what: str, interval: float = 0.05):
    """Poll pred() until it returns a truthy value; fail with `what` on timeout."""
    dl = Deadline(timeout, what)
    last = None
    while True:
        try:
            v = pred()
            if v:
                return v
            last = v
        except Exception as e:  # noqa: BLE001 - keep polling, report the last error
            last = repr(e)
        if dl.expired():
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last})")
        time.sleep(interval)


def controller_of(bootstrap: str, timeout: float = 2.0) -> int:
    """The controller (the metadata leader) one node names in a raw DescribeCluster v0
    answer, asked of that node alone: a client library would bootstrap, learn every
    broker and may try a dead one first, so its answer would time the client, not the
    election. (Metadata names the answering node as controller, see handlers/metadata.rs.)"""
    import socket
    import struct

    host, port = bootstrap.rsplit(":", 1)
    # header v2 (api 60, v0, correlation 7, no client id, no tags), then
    # include_cluster_authorized_operations=false and no tags
    body = struct.pack(">hhih", 60, 0, 7, -1) + b"\x00" + b"\x00\x00"
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(struct.pack(">i", len(body)) + body)

        def exact(n: int) -> bytes:
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                if not chunk:
                    raise ConnectionError("closed mid-answer")
                buf += chunk
            return buf

        (size,) = struct.unpack(">i", exact(4))
        resp = exact(size)
    pos = 0

    def uvarint() -> int:
        nonlocal pos
        value, shift = 0, 0
        while True:
            byte = resp[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def skip_compact_string():
        nonlocal pos
        length = uvarint()  # N + 1, 0 for null
        pos += max(length - 1, 0)

    pos += 4  # correlation id
    for _ in range(uvarint()):  # header tags
        uvarint()
        skip_compact_string()
    pos += 4  # throttle
    (error,) = struct.unpack_from(">h", resp, pos)
    pos += 2
    if error:
        raise AssertionError(f"DescribeCluster error {error}")
    skip_compact_string()  # error message
    skip_compact_string()  # cluster id
    (controller,) = struct.unpack_from(">i", resp, pos)
    return controller


# --- confluent-kafka ---------------------------------------------------------------------

def ck_conf(bootstrap: str, **extra) -> dict:
    conf = {"bootstrap.servers": bootstrap, "broker.address.family": "v4"}
    conf.update(extra)
    return conf


def ck_admin(bootstrap: str) -> AdminClient:
    return AdminClient(ck_conf(bootstrap))


def topic_partition_count(admin: AdminClient, topic: str):
    """Partition count of `topic` if it exists and every partition has a leader, else None.
    Asks for all topics: a Metadata request naming the topic could auto-create it."""
    md = admin.list_topics(timeout=10)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    if any(p.leader < 0 or p.error is not None for p in t.partitions.values()):
        return None
    return len(t.partitions)


def create_topic(bootstrap: str, topic: str, partitions: int = 1, config: dict | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
    """Create a topic with confluent-kafka and wait until every partition has a leader."""
    admin = ck_admin(bootstrap)
    fs = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                       config={k: str(v) for k, v in (config or {}).items()})],
                             operation_timeout=timeout, request_timeout=timeout)
    fs[topic].result(timeout=timeout)
    wait_topic(bootstrap, topic, partitions, timeout)


def wait_topic(bootstrap: str, topic: str, partitions: int, timeout: float = DEFAULT_TIMEOUT):
    admin = ck_admin(bootstrap)
    wait_until(lambda: topic_partition_count(admin, topic) == partitions, timeout,
               f"topic {topic} with {partitions} partitions led in metadata")


def ck_watermarks(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    c = Consumer(ck_conf(bootstrap, **{"group.id": "compat-watermarks", "enable.auto.commit": False}))
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


# --- records -------------------------------------------------------------------------------

@dataclass
class Rec:
    key: bytes | None
    value: bytes | None
    headers: list = field(default_factory=list)  # list[(str, bytes)]
    timestamp: int | None = None

    def ident(self):
        return (self.key, self.value, [(k, v) for k, v in self.headers])


def gen_records(n: int, seed: int) -> list[Rec]:
    """Keyed small records: key k{i%1000}, some null keys, some null values, some headers
    (including duplicate header keys and empty header values), random payload bytes."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        key = None if i % 97 == 0 else f"k{i % 1000}".encode()
        value = None if (i % 1009 == 5 and key is not None) else f"v{i}:".encode() + rnd.randbytes(rnd.randint(0, 40))
        headers = []
        if i % 10 == 0:
            headers = [("idx", str(i).encode()), ("bin", rnd.randbytes(8)), ("idx", b"")]
        out.append(Rec(key, value, headers))
    return out


def norm_headers(h) -> list:
    if not h:
        return []
    return [(k if isinstance(k, str) else k.decode(), b"" if v is None else bytes(v)) for k, v in h]


# --- producing ----------------------------------------------------------------------------

def ck_produce(bootstrap: str, topic: str, recs: list[Rec], compression: str = "none",
               timeout: float = 60.0, partition: int | None = None, **conf) -> list[tuple[int, int]]:
    """Produce with confluent-kafka (acks=all). Returns (partition, offset) per record."""
    fatal: list = []

    def on_error(err):
        if err.fatal():
            fatal.append(err)

    p = Producer(ck_conf(bootstrap, **{"acks": "all", "compression.type": compression,
                                      "linger.ms": 5, "enable.idempotence": False,
                                      "error_cb": on_error, **conf}))
    acks: list = [None] * len(recs)
    errors: list = []

    def make_cb(i):
        def cb(err, msg):
            if err is not None:
                errors.append((i, err))
            else:
                acks[i] = (msg.partition(), msg.offset())
        return cb

    dl = Deadline(timeout, f"producing {len(recs)} records to {topic}")
    for i, r in enumerate(recs):
        kw = {"key": r.key, "value": r.value, "on_delivery": make_cb(i)}
        if r.headers:
            kw["headers"] = list(r.headers)
        if r.timestamp is not None:
            kw["timestamp"] = r.timestamp
        if partition is not None:
            kw["partition"] = partition
        while True:
            try:
                p.produce(topic, **kw)
                break
            except BufferError:
                p.poll(0.05)
                dl.check()
        p.poll(0)
        assert not fatal, f"fatal producer error: {fatal[0].str()}"
    try:
        remaining = p.flush(max(1.0, dl.end - time.monotonic()))
    except (SystemError, KafkaException) as e:  # a fatal error surfaces from inside callbacks
        cause = fatal[0].str() if fatal else repr(e.__context__ or e)
        raise AssertionError(f"producer failed: {cause}") from None
    assert not fatal, f"fatal producer error: {fatal[0].str()}"
    assert remaining == 0, f"{remaining} records still unacknowledged after {timeout}s"
    assert not errors, f"{len(errors)} produce errors, first: {errors[:3]}"
    assert all(a is not None for a in acks)
    return acks


def kp_produce(bootstrap: str, topic: str, recs: list[Rec], compression: str = "none",
               timeout: float = 60.0, **conf) -> list[tuple[int, int]]:
    """Produce with kafka-python (acks=all). Returns (partition, offset) per record.
    Extra keyword arguments go to KafkaProducer (e.g. enable_idempotence)."""
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all",
                      compression_type=None if compression == "none" else compression,
                      linger_ms=5, batch_size=64 * 1024, request_timeout_ms=int(timeout * 1000),
                      **conf)
    try:
        futs = [p.send(topic, key=r.key, value=r.value, headers=list(r.headers) or None,
                       timestamp_ms=r.timestamp) for r in recs]
        p.flush(timeout=timeout)
        acks = []
        for f in futs:
            md = f.get(timeout=timeout)
            acks.append((md.partition, md.offset))
        return acks
    finally:
        p.close(timeout=5)


# --- consuming ----------------------------------------------------------------------------

@dataclass
class Got:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list
    timestamp: int

    def ident(self):
        return (self.key, self.value, self.headers)


def ck_consume(bootstrap: str, topic: str, ends: dict[int, int], timeout: float = 60.0,
               starts: dict[int, int] | None = None) -> dict[int, list[Got]]:
    """Read every partition from `starts` (default: beginning) up to the given end offsets."""
    c = Consumer(ck_conf(bootstrap, **{"group.id": "compat-reader", "enable.auto.commit": False,
                                      "auto.offset.reset": "earliest",
                                      "enable.partition.eof": False}))
    out: dict[int, list[Got]] = {p: [] for p in ends}
    try:
        c.assign([TopicPartition(topic, p, (starts or {}).get(p, OFFSET_BEGINNING)) for p in ends])
        dl = Deadline(timeout, f"consuming {topic} up to {ends}")
        pos = {p: -1 for p in ends}
        while any(pos[p] + 1 < ends[p] for p in ends):
            dl.check(f"positions {pos}")
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error():
                    raise KafkaException(m.error())
                ts_type, ts = m.timestamp()
                g = Got(m.partition(), m.offset(), m.key(), m.value(), norm_headers(m.headers()), ts)
                out[g.partition].append(g)
                pos[g.partition] = max(pos[g.partition], g.offset)
    finally:
        c.close()
    return out


def kp_consume(bootstrap: str, topic: str, ends: dict[int, int], timeout: float = 60.0,
               starts: dict[int, int] | None = None) -> dict[int, list[Got]]:
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024)
    out: dict[int, list[Got]] = {p: [] for p in ends}
    try:
        tps = [KTP(topic, p) for p in ends]
        c.assign(tps)
        for tp in tps:
            if starts and tp.partition in starts:
                c.seek(tp, starts[tp.partition])
            else:
                c.seek_to_beginning(tp)
        dl = Deadline(timeout, f"consuming {topic} up to {ends}")
        pos = {p: -1 for p in ends}
        while any(pos[p] + 1 < ends[p] for p in ends):
            dl.check(f"positions {pos}")
            batch = c.poll(timeout_ms=500, max_records=20000)
            for tp, msgs in batch.items():
                for m in msgs:
                    g = Got(m.partition, m.offset, m.key, m.value, norm_headers(m.headers), m.timestamp)
                    out[g.partition].append(g)
                    pos[g.partition] = max(pos[g.partition], g.offset)
    finally:
        c.close()
    return out


def check_dense_and_exact(recs: list[Rec], acks: list[tuple[int, int]], got: dict[int, list[Got]]):
    """Every partition holds offsets 0..n-1 exactly once, each equal (byte-exact) to the
    record the producer got that (partition, offset) acknowledgement for."""
    expected: dict[int, dict[int, Rec]] = {}
    for r, (p, o) in zip(recs, acks):
        assert o not in expected.setdefault(p, {}), f"two records acked at {p}/{o}"
        expected[p][o] = r
    total = 0
    for p, msgs in got.items():
        offsets = [m.offset for m in msgs]
        exp = expected.get(p, {})
        assert offsets == list(range(len(exp))), (
            f"partition {p}: offsets not dense from 0 (got {len(offsets)} records, first "
            f"irregularity at index {next((i for i, o in enumerate(offsets) if o != i), None)})")
        assert sorted(exp) == offsets, f"partition {p}: acked offsets differ from consumed ones"
        for m in msgs:
            want = exp[m.offset]
            assert m.ident() == want.ident(), (
                f"partition {p} offset {m.offset}: got {m.ident()!r}, want {want.ident()!r}")
        total += len(msgs)
    assert total == len(recs)
