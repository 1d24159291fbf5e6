"""Malformed traffic on raw sockets: the offending connection is closed, the broker keeps
serving everyone else."""

import socket
from pathlib import Path
import struct
import time

import pytest

from helpers import Rec, ck_consume, ck_produce, create_topic, wait_until

CLOSE_TIMEOUT = 15.0
MAX_FRAME = 100 * 1024 * 1024  # Kafka's socket.request.max.bytes default


def connect(bootstrap):
    host, port = bootstrap.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def assert_closed_by_broker(s: socket.socket, what: str):
    """The broker must close the connection (EOF or RST) within CLOSE_TIMEOUT."""
    deadline = time.monotonic() + CLOSE_TIMEOUT
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout
            s.settimeout(remaining)
            data = s.recv(65536)
            if not data:
                return
    except (ConnectionResetError, BrokenPipeError):
        return
    except socket.timeout:
        pytest.fail(f"broker kept the connection open {CLOSE_TIMEOUT}s after {what}")
    finally:
        s.close()


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise AssertionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def api_versions_v0(correlation_id: int) -> bytes:
    client = b"raw-test"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client)) + client
    return struct.pack(">i", len(body)) + body


def read_response(s) -> bytes:
    s.settimeout(10)
    (size,) = struct.unpack(">i", recv_exact(s, 4))
    return recv_exact(s, size)


def parse_api_versions_v0(resp: bytes):
    corr, err, n = struct.unpack(">ihi", resp[:10])
    keys = {}
    for i in range(n):
        k, lo, hi = struct.unpack(">hhh", resp[10 + 6 * i: 16 + 6 * i])
        keys[k] = (lo, hi)
    return corr, err, keys


@pytest.fixture
def healthy(broker, topic_name):
    """Returns a check that a *fresh* client can still produce and consume."""
    create_topic(broker, topic_name, 1)
    state = {"n": 0}

    def check():
        i = state["n"]
        [(p, o)] = ck_produce(broker, topic_name, [Rec(b"k", f"alive-{i}".encode())], partition=0)
        assert (p, o) == (0, i)
        got = ck_consume(broker, topic_name, {0: i + 1}, starts={0: i})
        assert [m.value for m in got[0]] == [f"alive-{i}".encode()]
        state["n"] += 1
    check()
    return check


def test_raw_api_versions(broker):
    """Sanity check of the raw framing used below: ApiVersions v0 works on a plain socket,
    several requests on one connection answer in order."""
    s = connect(broker)
    try:
        s.sendall(api_versions_v0(7) + api_versions_v0(8))
        for expected in (7, 8):
            corr, err, keys = parse_api_versions_v0(read_response(s))
            assert (corr, err) == (expected, 0)
            for api in (0, 1, 2, 3, 18, 19, 20, 21, 32, 44):  # produce..apiversions, topics, configs
                assert api in keys, f"ApiVersions lacks api key {api}"
    finally:
        s.close()


def test_api_versions_unsupported_version(broker):
    """An ApiVersions request newer than the broker knows gets UNSUPPORTED_VERSION (35) with the
    supported ranges in a v0 body (KIP-511) instead of a closed connection; clients rely on it."""
    s = connect(broker)
    try:
        client = b"raw-test"
        # header v2: api_key, api_version, correlation_id, client_id, empty tagged fields
        body = struct.pack(">hhih", 18, 999, 99, len(client)) + client + b"\x00"
        body += b"\x00\x00\x00"  # some body bytes the broker cannot know the schema of
        s.sendall(struct.pack(">i", len(body)) + body)
        corr, err, keys = parse_api_versions_v0(read_response(s))
        assert corr == 99
        assert err == 35
        assert 18 in keys
    finally:
        s.close()


@pytest.mark.parametrize("payload", [
    pytest.param(struct.pack(">i", 12) + struct.pack(">hhi", 0x7ABC, 0, 1) + b"\xde\xad\xbe\xef",
                 id="unknown-api-key"),
    pytest.param(struct.pack(">i", 14) + struct.pack(">hhi", 3, 0, 1) + b"\xff\xff\xff\x7f\x00\x01",
                 id="metadata-bad-body"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http-request"),
    pytest.param(struct.pack(">i", 1020) + (bytes(range(256)) * 4)[4:], id="unsupported-version"),
    pytest.param(struct.pack(">i", -5) + b"abc", id="negative-length"),
])
def test_garbage_closes_connection(broker, healthy, payload):
    s = connect(broker)
    s.sendall(payload)
    assert_closed_by_broker(s, "garbage")
    healthy()


def test_oversized_frame_closes_connection(broker, healthy):
    s = connect(broker)
    s.sendall(struct.pack(">i", MAX_FRAME + 1) + b"\x00\x12\x00\x00")
    assert_closed_by_broker(s, "a length prefix above 100 MiB")
    s = connect(broker)
    s.sendall(struct.pack(">i", 0x7FFFFFFF))
    assert_closed_by_broker(s, "a 2 GiB length prefix")
    healthy()


def test_truncated_frame_then_close(broker, healthy):
    for cut in (2, 4, 10, 30):
        s = connect(broker)
        frame = api_versions_v0(1)
        s.sendall(struct.pack(">i", 100) + frame[4:][:cut] if cut > 4 else frame[:cut])
        s.close()
    healthy()
    # valid request followed by a truncated one on the same connection: the first is answered
    s = connect(broker)
    try:
        s.sendall(api_versions_v0(5) + api_versions_v0(6)[:9])
        corr, err, _ = parse_api_versions_v0(read_response(s))
        assert (corr, err) == (5, 0)
    finally:
        s.close()
    healthy()


def test_valid_request_then_garbage(broker, healthy):
    s = connect(broker)
    s.sendall(api_versions_v0(11))
    corr, err, _ = parse_api_versions_v0(read_response(s))
    assert (corr, err) == (11, 0)
    s.sendall(struct.pack(">i", 8) + struct.pack(">hhi", 0x7ABC, 0, 12))
    assert_closed_by_broker(s, "garbage after a valid request")
    healthy()


def test_many_idle_connections(broker, healthy):
    socks = [connect(broker) for _ in range(200)]
    try:
        healthy()
        # half-open: some send a partial length prefix and stay
        for s in socks[:50]:
            s.sendall(b"\x00\x00")
        healthy()
    finally:
        for s in socks:
            s.close()
    healthy()


def huge_count_request(api_key: int, version: int, prefix: bytes = b"") -> bytes:
    """A request of `api_key` v`version` (header v1: no tagged fields) whose body opens
    with `prefix` then an int32 count of 2^31 - 2 and four bytes: the shape that made
    the array decoder reserve the count before reading an element."""
    client = struct.pack(">h", -1)
    body = struct.pack(">hhi", api_key, version, 1) + client + prefix + struct.pack(">i", 2**31 - 2) + b"\x00" * 4
    return struct.pack(">i", len(body)) + body


@pytest.mark.parametrize("request_bytes", [
    pytest.param(huge_count_request(3, 1), id="metadata-v1-18-bytes"),
    # Produce v3: transactional id (null), acks, timeout, then the topic array
    pytest.param(huge_count_request(0, 3, struct.pack(">hhi", -1, -1, 30000)), id="produce-v3"),
    # CreateTopics v2: the topic array first
    pytest.param(huge_count_request(19, 2), id="create-topics-v2"),
    # ListOffsets v1: replica id, then the topic array
    pytest.param(huge_count_request(2, 1, struct.pack(">i", -1)), id="list-offsets-v1"),
])
@pytest.mark.dlog_only
def test_a_huge_count_closes_that_connection_only(broker_proc, healthy, request_bytes):
    """One small request claiming 2^31 elements used to abort the whole broker (the
    decoder reserved memory for the count before reading an element). Now it is
    malformed: that connection closes, the process lives, and a fresh client still
    produces and consumes."""
    assert len(huge_count_request(3, 1)) == 4 + 18
    s = connect(broker_proc.bootstrap)
    s.sendall(request_bytes)
    assert_closed_by_broker(s, "a huge count")
    assert broker_proc.alive(), broker_proc.log_tail()
    healthy()


# ---- record validation (Kafka's LogValidator for magic v2) -----------------------------

def gzip_batch(values, timestamp_ms=None, claim=None):
    """A gzip RecordBatch v2 of `values`, built by kafka-python; with `claim`, its header
    then says it holds `claim` records (last offset delta agreeing, CRC recomputed)."""
    from kafka.record.default_records import DefaultRecordBatchBuilder
    from kafka.record.util import calc_crc32c
    b = DefaultRecordBatchBuilder(magic=2, compression_type=1, is_transactional=False, producer_id=-1,
                                  producer_epoch=-1, base_sequence=-1, batch_size=1 << 30)
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    for i, v in enumerate(values):
        b.append(i, timestamp=ts, key=None, value=v, headers=[])
    batch = bytearray(b.build())
    if claim is not None:
        batch[23:27] = struct.pack(">i", claim - 1)  # last offset delta
        batch[57:61] = struct.pack(">i", claim)      # record count
        batch[17:21] = struct.pack(">I", calc_crc32c(bytes(batch[21:])))
    return bytes(batch)


def produce_v3(s, topic: str, partition: int, batch: bytes) -> int:
    """One Produce v3 (acks=-1) of `batch` on a raw socket; returns the partition's error."""
    name = topic.encode()
    body = (struct.pack(">hhih", 0, 3, 42, -1)        # header v1: api, version, correlation, no client id
            + struct.pack(">hhi", -1, -1, 30000)       # no transactional id, acks=-1, timeout
            + struct.pack(">ih", 1, len(name)) + name
            + struct.pack(">iii", 1, partition, len(batch)) + batch)
    s.sendall(struct.pack(">i", len(body)) + body)
    resp = read_response(s)
    corr, topics, name_len = struct.unpack(">iih", resp[:10])
    assert (corr, topics) == (42, 1)
    at = 10 + name_len
    _, index, error = struct.unpack(">iih", resp[at:at + 10])
    assert index == partition
    return error


def test_a_compressed_batch_lying_about_its_count_is_refused(broker, healthy, topic_name):
    """Three gzip records under a header claiming 2,000,000,000: INVALID_RECORD (87), as
    Kafka answers, and nothing appended (the healthy check's offsets stay dense)."""
    s = connect(broker)
    try:
        lie = gzip_batch([b"a", b"b", b"c"], claim=2_000_000_000)
        assert produce_v3(s, topic_name, 0, lie) == 87
        assert produce_v3(s, topic_name, 0, gzip_batch([b"a", b"b", b"c"], claim=2)) == 87
    finally:
        s.close()
    healthy()


@pytest.mark.dlog_only
def test_a_compression_bomb_is_refused_not_inflated(broker_proc, healthy, topic_name):
    """100 MiB of zeroes in a ~100 KiB gzip batch: DLog inflates at most 64 x
    max.message.bytes (64 MiB by default) as a stream, refuses it with INVALID_RECORD and
    appends nothing; the node's memory does not grow by the inflated size."""
    bomb = gzip_batch([b"\0" * (100 << 20)])
    assert len(bomb) < 1 << 20
    rss_before = broker_proc.rss_bytes()
    s = connect(broker_proc.bootstrap)
    try:
        for _ in range(3):
            assert produce_v3(s, topic_name, 0, bomb) == 87
    finally:
        s.close()
    assert broker_proc.alive(), broker_proc.log_tail()
    grown = broker_proc.rss_bytes() - rss_before
    assert grown < 32 << 20, f"RSS grew by {grown >> 20} MiB while refusing a bomb"
    healthy()


def test_timestamps_outside_the_topic_window_are_refused(broker, topic_name):
    """CreateTime topics refuse a record more than message.timestamp.after.max.ms (one
    hour by default in Kafka 4) in the future, or more than before.max.ms in the past,
    with INVALID_TIMESTAMP (32); within the window, and on LogAppendTime topics, it is
    stored."""
    now = int(time.time() * 1000)
    create_topic(broker, topic_name, 1, config={"message.timestamp.before.max.ms": "86400000"})
    create_topic(broker, topic_name + "-lat", 1, config={"message.timestamp.type": "LogAppendTime"})
    s = connect(broker)
    try:
        assert produce_v3(s, topic_name, 0, gzip_batch([b"late"], timestamp_ms=now + 2 * 3600_000)) == 32
        assert produce_v3(s, topic_name, 0, gzip_batch([b"old"], timestamp_ms=now - 2 * 86400_000)) == 32
        assert produce_v3(s, topic_name, 0, gzip_batch([b"ok"], timestamp_ms=now + 600_000)) == 0
        assert produce_v3(s, topic_name + "-lat", 0, gzip_batch([b"late"], timestamp_ms=now + 2 * 3600_000)) == 0
    finally:
        s.close()
    got = ck_consume(broker, topic_name, {0: 1})
    assert [m.value for m in got[0]] == [b"ok"]


# ---- fetch within its budget -------------------------------------------------------------

def fetch_v4(s, topic: str, partitions: list[tuple[int, int, int]], max_bytes: int) -> list[tuple[int, int, int]]:
    """One Fetch v4 on a raw socket naming (partition, offset, partition_max_bytes) in
    order; returns (partition, error, record bytes) per partition of the answer."""
    name = topic.encode()
    parts = b"".join(struct.pack(">iqi", p, o, m) for p, o, m in partitions)
    body = (struct.pack(">hhih", 1, 4, 43, -1)
            + struct.pack(">iiiib", -1, 0, 1, max_bytes, 0)  # replica, max wait 0, min bytes 1, max bytes, isolation
            + struct.pack(">ih", 1, len(name)) + name + struct.pack(">i", len(partitions)) + parts)
    s.sendall(struct.pack(">i", len(body)) + body)
    resp = read_response(s)
    at = 4 + 4  # correlation id, throttle time
    (topics,) = struct.unpack(">i", resp[at:at + 4])
    assert topics == 1
    (name_len,) = struct.unpack(">h", resp[at + 4:at + 6])
    at += 6 + name_len
    (n,) = struct.unpack(">i", resp[at:at + 4])
    at += 4
    out = []
    for _ in range(n):
        p, err, _hw, _lso, aborted = struct.unpack(">ihqqi", resp[at:at + 26])
        at += 26 + max(aborted, 0) * 16
        (size,) = struct.unpack(">i", resp[at:at + 4])
        at += 4 + max(size, 0)
        out.append((p, err, max(size, 0)))
    return out


def peak_rss_bytes(b) -> int:
    for line in Path(f"/proc/{b.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def fetch_within_budget(b, topic: str, partitions: list[tuple[int, int, int]], max_bytes: int):
    """Sends one Fetch of `partitions` under `max_bytes` and checks the node answered
    within the budget and read (held) about that much: returns the answer."""
    s = connect(b.bootstrap)
    try:
        fetch_v4(s, topic, [(0, 0, 1 << 20)], 1 << 20)  # warm up the connection's buffers
        before = peak_rss_bytes(b)
        started = time.monotonic()
        got = fetch_v4(s, topic, partitions, max_bytes)
        took = time.monotonic() - started
    finally:
        s.close()
    assert len(got) == len(partitions) and all(err == 0 for _, err, _ in got)
    total = sum(size for _, _, size in got)
    assert 0 < total <= max_bytes, f"{total} bytes answered for a {max_bytes}-byte budget"
    grown = peak_rss_bytes(b) - before
    assert grown < 32 << 20, f"peak RSS grew by {grown >> 20} MiB serving a {max_bytes >> 20} MiB fetch"
    assert took < 10, f"{took:.1f}s for one fetch"
    return got


@pytest.mark.dlog_only
def test_one_partition_named_ten_thousand_times_is_read_within_the_budget(own_broker, topic_name):
    """A Fetch naming one partition 10,000 times, each with a 1 MiB partition limit,
    under a 1 MiB response limit: DLog reads partitions in order while the budget lasts,
    so the node reads (and holds) about 1 MiB, not 10,000 x 1 MiB, and the answer is
    within max_bytes plus the one batch KIP-74 allows."""
    create_topic(own_broker.bootstrap, topic_name, 1)
    value = b"x" * (300 << 10)
    ck_produce(own_broker.bootstrap, topic_name, [Rec(b"k", value) for _ in range(4)], partition=0,
               **{"linger.ms": 0, "batch.size": 1})
    got = fetch_within_budget(own_broker, topic_name, [(0, 0, 1 << 20)] * 10_000, 1 << 20)
    assert sum(1 for _, _, size in got if size) == 1, "only the first naming carries data"


@pytest.mark.dlog_only
def test_ten_thousand_partitions_in_one_fetch_are_read_within_the_budget(own_broker, topic_name):
    """10,000 partitions in one Fetch, the first 200 holding 1 MiB each, under a 1 MiB
    response limit: about 1 MiB is read, not 200 MiB. The node keeps three descriptors
    per partition's active segment, so the test raises its descriptor limit first (or,
    where it may not, uses as many partitions as the limit allows)."""
    import resource
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
    except (ValueError, OSError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    partitions = min(10_000, (soft - 2_000) // 3)
    own_broker.stop()
    own_broker.start()  # inherits the descriptor limit
    create_topic(own_broker.bootstrap, topic_name, partitions, timeout=120)
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": own_broker.bootstrap, "broker.address.family": "v4",
                         "acks": "all", "linger.ms": 0, "batch.size": 1})
    failed = []
    for p in range(200):
        for _ in range(4):
            producer.produce(topic_name, value=b"y" * (250 << 10), partition=p,
                             on_delivery=lambda err, _msg: err and failed.append(err))
        producer.poll(0)
    assert producer.flush(60) == 0 and not failed, failed
    got = fetch_within_budget(own_broker, topic_name, [(p, 0, 1 << 20) for p in range(partitions)], 1 << 20)
    assert got[0][2] > 0, "the first partition carries data"


# ---- connections: limits, idle time, buffers ------------------------------------------------

def api_versions_answered(s, correlation_id: int, timeout: float) -> bool:
    """Sends ApiVersions v0 and says whether it is answered within `timeout`."""
    s.sendall(api_versions_v0(correlation_id))
    s.settimeout(timeout)
    try:
        (size,) = struct.unpack(">i", recv_exact(s, 4))
        corr, err, _ = parse_api_versions_v0(recv_exact(s, size))
        return (corr, err) == (correlation_id, 0)
    except (socket.timeout, TimeoutError):
        return False


def open_served(bootstrap: str, correlation_id: int) -> socket.socket:
    """A connection the node serves. The fixture's start-up probe (a connection opened
    and closed to see the port listening) counts against the limits until the node has
    read its close, a few milliseconds: until then a connection may be refused."""
    deadline = time.monotonic() + 10
    while True:
        s = connect(bootstrap)
        try:
            if api_versions_answered(s, correlation_id, 5):
                return s
        except (AssertionError, OSError):
            pass
        s.close()
        if time.monotonic() > deadline:
            pytest.fail("no connection served within 10 s")
        time.sleep(0.05)


@pytest.mark.dlog_only
@pytest.mark.broker_env({"DLOG_MAX_CONNECTIONS_PER_IP": "5"})
def test_max_connections_per_ip_closes_the_one_too_many(own_broker):
    socks = []
    try:
        for i in range(5):
            socks.append(open_served(own_broker.bootstrap, i))
        assert_closed_by_broker(connect(own_broker.bootstrap), "a sixth connection from one address")
        socks.pop().close()

        def a_new_one_is_served():
            s = connect(own_broker.bootstrap)
            try:
                return api_versions_answered(s, 99, 2)
            except (AssertionError, ConnectionError):
                return False  # closed: the broker has not seen the close yet
            finally:
                s.close()
        wait_until(a_new_one_is_served, 10, "a slot freed by a close serves a new connection")
    finally:
        for s in socks:
            s.close()


@pytest.mark.dlog_only
@pytest.mark.broker_env({"DLOG_MAX_CONNECTIONS": "5"})
def test_at_max_connections_new_clients_wait_until_one_closes(own_broker):
    """As Kafka's acceptor: at max.connections the node stops accepting; the client's
    connection waits in the backlog and is served once another closes."""
    socks = [open_served(own_broker.bootstrap, i) for i in range(5)]
    waiting = connect(own_broker.bootstrap)  # the kernel completes the handshake
    try:
        assert not api_versions_answered(waiting, 50, 1.0), "served past max.connections"
        socks.pop().close()
        waiting.settimeout(10)
        (size,) = struct.unpack(">i", recv_exact(waiting, 4))
        corr, err, _ = parse_api_versions_v0(recv_exact(waiting, size))
        assert (corr, err) == (50, 0)
    finally:
        waiting.close()
        for s in socks:
            s.close()


@pytest.mark.dlog_only
@pytest.mark.broker_env({"DLOG_CONNECTIONS_MAX_IDLE_MS": "500"})
def test_idle_and_half_sent_connections_are_closed_busy_ones_are_not(own_broker):
    idle = connect(own_broker.bootstrap)
    half = connect(own_broker.bootstrap)
    half.sendall(struct.pack(">i", 100) + b"\x00\x12")  # 2 bytes of a 100-byte frame
    busy = connect(own_broker.bootstrap)
    try:
        started = time.monotonic()
        for i in range(12):  # 2.4 s of a request every 200 ms
            assert api_versions_answered(busy, i, 5), f"an active connection was closed after {i} requests"
            time.sleep(0.2)  # fixed spacing, well inside the 500 ms idle limit: busy stays active
        assert_closed_by_broker(idle, "500 ms of silence")
        assert_closed_by_broker(half, "500 ms of silence mid-frame")
        assert time.monotonic() - started < CLOSE_TIMEOUT
    finally:
        busy.close()


def vm_bytes(b, field: str) -> int:
    for line in Path(f"/proc/{b.proc.pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field}")


@pytest.mark.dlog_only
def test_thousands_of_half_sent_frames_leave_real_clients_served(own_broker, topic_name):
    """2,000 connections each declaring a 90 MiB frame and sending 100 bytes of it: the
    node reserves nothing from the declared sizes (buffers grow as bytes arrive, a large
    frame waits for the node's request byte budget), so its address space and memory stay
    bounded and a real client still produces and consumes."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    own_broker.stop()
    own_broker.start()  # inherits the raised descriptor limit
    create_topic(own_broker.bootstrap, topic_name, 1)
    ck_produce(own_broker.bootstrap, topic_name, [Rec(b"k", b"before")], partition=0)
    before_size, before_peak = vm_bytes(own_broker, "VmSize"), vm_bytes(own_broker, "VmHWM")
    socks = []
    try:
        for _ in range(2000):
            s = connect(own_broker.bootstrap)
            s.sendall(struct.pack(">i", 90 << 20) + b"\x00" * 100)
            socks.append(s)
        acks = ck_produce(own_broker.bootstrap, topic_name, [Rec(b"k", b"during")], partition=0)
        assert acks == [(0, 1)]
        got = ck_consume(own_broker.bootstrap, topic_name, {0: 2})
        assert [m.value for m in got[0]] == [b"before", b"during"]
        grown_size = vm_bytes(own_broker, "VmSize") - before_size
        grown_peak = vm_bytes(own_broker, "VmHWM") - before_peak
        assert grown_size < 2 << 30, f"address space grew by {grown_size >> 20} MiB"
        assert grown_peak < 256 << 20, f"peak RSS grew by {grown_peak >> 20} MiB"
    finally:
        for s in socks:
            s.close()
    assert own_broker.alive(), own_broker.log_tail()
