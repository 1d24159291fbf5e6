"""Malformed traffic on raw sockets: the offending connection is closed, the broker keeps
serving everyone else."""

import socket
import struct
import time

import pytest

from helpers import Rec, ck_consume, ck_produce, create_topic

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
