"""The `dlog` command line. The tools speak the Kafka protocol, so they run against either
target; `dlog broker` flag handling is DLog-only."""

import subprocess

import pytest
from confluent_kafka.admin import ConfigResource, ResourceType

from conftest import free_port
from helpers import (Rec, ck_admin, ck_consume, ck_produce, create_topic, topic_partition_count,
                     wait_topic, wait_until)

pytestmark = pytest.mark.needs_cli
T = 60


def run(dlog_bin, *args, stdin: str | None = None, timeout: float = T):
    try:
        return subprocess.run([str(dlog_bin), *args], input=stdin, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"`dlog {' '.join(args)}` did not finish within {timeout}s "
                    f"(stdout={e.stdout!r}, stderr={e.stderr!r})")


def topic_cmd(dlog_bin, broker, *args, **kw):
    """`dlog topic --bootstrap B ARGS...` (see test_bootstrap_flag_position for the flag after
    the subcommand)."""
    return run(dlog_bin, "topic", "--bootstrap", broker, *args, **kw)


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def failed(r, *needles):
    assert r.returncode != 0, f"expected failure, got exit 0\nstdout: {r.stdout}\nstderr: {r.stderr}"
    msg = (r.stderr + r.stdout).lower()
    assert msg.strip(), "failed without any message"
    for n in needles:
        assert n.lower() in msg, f"message does not mention {n!r}: {r.stderr!r}"
    assert "panicked" not in msg, f"panic instead of an error message: {r.stderr}"
    return r


def test_topic_create_list_describe_delete(broker, dlog_bin, topic_name):
    ok(topic_cmd(dlog_bin, broker, "create", topic_name, "--partitions", "3",
           "--config", "retention.ms=123456", "--config", "segment.bytes=2097152"))
    wait_topic(broker, topic_name, 3)
    admin = ck_admin(broker)
    r = ConfigResource(ResourceType.TOPIC, topic_name)
    cfg = admin.describe_configs([r])[r].result(timeout=30)
    assert cfg["retention.ms"].value == "123456"
    assert cfg["segment.bytes"].value == "2097152"

    out = ok(topic_cmd(dlog_bin, broker, "list")).stdout
    assert topic_name in out.split(), out

    out = ok(topic_cmd(dlog_bin, broker, "describe", topic_name)).stdout
    assert topic_name in out
    assert "retention.ms" in out and "123456" in out, f"describe does not show the override:\n{out}"

    # creating it again fails and says why
    failed(topic_cmd(dlog_bin, broker, "create", topic_name, "--partitions", "1"), "exists")

    ok(topic_cmd(dlog_bin, broker, "delete", topic_name))
    wait_until(lambda: topic_name not in ok(topic_cmd(dlog_bin, broker, "list")).stdout.split(),
               30, "deleted topic gone from `dlog topic list`")
    failed(topic_cmd(dlog_bin, broker, "describe", topic_name), topic_name)
    failed(topic_cmd(dlog_bin, broker, "delete", topic_name), topic_name)


def test_topic_create_rejected_by_broker(broker, dlog_bin, topic_name):
    failed(topic_cmd(dlog_bin, broker, "create", "bad/name", "--partitions", "1"), "bad/name")
    failed(topic_cmd(dlog_bin, broker, "create", topic_name, "--partitions", "1",
               "--config", "retention.ms=abc"), "retention.ms")
    assert topic_partition_count(ck_admin(broker), topic_name) is None


def test_produce_consume(broker, dlog_bin, topic_name):
    b = ["--bootstrap", broker]
    create_topic(broker, topic_name, 1)
    lines = [f"key{i}:value {i} with: colon" for i in range(50)]
    ok(run(dlog_bin, "produce", topic_name, "--key-separator", ":", *b, stdin="\n".join(lines) + "\n"))
    got = ck_consume(broker, topic_name, {0: 50})
    assert [(m.key, m.value) for m in got[0]] == \
        [(f"key{i}".encode(), f"value {i} with: colon".encode()) for i in range(50)]

    # without a separator the whole line is the value, keys are null
    ok(run(dlog_bin, "produce", topic_name, *b, stdin="plain a\nplain b\n"))
    got = ck_consume(broker, topic_name, {0: 52}, starts={0: 50})
    assert [(m.key, m.value) for m in got[0]] == [(None, b"plain a"), (None, b"plain b")]

    out = ok(run(dlog_bin, "consume", topic_name, "--from-beginning", "--max-messages", "52", *b)).stdout
    assert out.splitlines() == [f"value {i} with: colon" for i in range(50)] + ["plain a", "plain b"]

    out = ok(run(dlog_bin, "consume", topic_name, "--from-beginning", "--max-messages", "3",
                 "--print-key", *b)).stdout
    assert out.splitlines() == [f"key{i}\tvalue {i} with: colon" for i in range(3)]

    out = ok(run(dlog_bin, "consume", topic_name, "--partition", "0", "--offset", "48",
                 "--max-messages", "4", *b)).stdout
    assert out.splitlines() == ["value 48 with: colon", "value 49 with: colon", "plain a", "plain b"]


def test_consume_records_from_clients(broker, dlog_bin, topic_name):
    """Records written by a real client (compressed, several partitions) are printed."""
    b = ["--bootstrap", broker]
    create_topic(broker, topic_name, 3)
    recs = [Rec(f"k{i}".encode(), f"v{i}".encode()) for i in range(300)]
    acks = ck_produce(broker, topic_name, recs, compression="lz4")
    out = ok(run(dlog_bin, "consume", topic_name, "--from-beginning", "--max-messages", "300",
                 "--print-key", *b)).stdout
    assert sorted(out.splitlines()) == sorted(f"k{i}\tv{i}" for i in range(300))
    p1 = [r for r, (p, o) in zip(recs, acks) if p == 1]
    out = ok(run(dlog_bin, "consume", topic_name, "--from-beginning", "--partition", "1",
                 "--max-messages", str(len(p1)), *b)).stdout
    assert out.splitlines() == [r.value.decode() for r in p1]


def test_bad_usage(broker, dlog_bin, topic_name):
    b = ["--bootstrap", broker]
    failed(run(dlog_bin, "frobnicate"), "frobnicate")
    failed(topic_cmd(dlog_bin, broker, "create", topic_name, "--partitions", "abc"), "--partitions", "abc")
    failed(topic_cmd(dlog_bin, broker, "create", topic_name, "--partitions", "2", "--bogus-flag"),
           "--bogus-flag")
    failed(topic_cmd(dlog_bin, broker, "create", topic_name, "--config", "novalue"), "novalue")
    failed(run(dlog_bin, "consume", topic_name, "--max-messages", "lots", *b), "--max-messages", "lots")
    failed(run(dlog_bin, "consume", "no-such-topic-zz", "--from-beginning", "--max-messages", "1", *b),
           "no-such-topic-zz")
    assert topic_partition_count(ck_admin(broker), topic_name) is None


def test_unreachable_bootstrap(dlog_bin):
    port = free_port()  # nothing listens here
    addr = f"127.0.0.1:{port}"
    for args in (["list"], ["create", "x", "--partitions", "1"]):
        failed(topic_cmd(dlog_bin, addr, *args), addr)
    failed(run(dlog_bin, "consume", "x", "--from-beginning", "--max-messages", "1", "--bootstrap", addr),
           addr)
    failed(run(dlog_bin, "produce", "x", "--bootstrap", addr, stdin="a\n"), addr)
    failed(topic_cmd(dlog_bin, "not-an-address", "list"), "not-an-address")


def test_bootstrap_flag_position(broker, dlog_bin, topic_name):
    """`--bootstrap` is accepted after the topic subcommand too (`dlog topic create NAME ...
    --bootstrap B`), like every other flag of the tools."""
    ok(run(dlog_bin, "topic", "create", topic_name, "--partitions", "1", "--bootstrap", broker))
    wait_topic(broker, topic_name, 1)
    assert topic_name in ok(run(dlog_bin, "topic", "list", "--bootstrap", broker)).stdout.split()


@pytest.mark.dlog_only
def test_broker_bad_flags(dlog_bin, tmp_path):
    failed(run(dlog_bin, "broker", "--listen", "notanaddress", "--data-dir", str(tmp_path / "d"),
               timeout=30), "--listen")
    failed(run(dlog_bin, "broker", "--metrics-listen", "nope", "--data-dir", str(tmp_path / "d"),
               "--listen", f"127.0.0.1:{free_port()}", timeout=30), "--metrics-listen")
    failed(run(dlog_bin, "broker", "--node-id", "abc", "--data-dir", str(tmp_path / "d"), timeout=30),
           "--node-id")
    failed(run(dlog_bin, "broker", "--config", str(tmp_path / "missing.toml"),
               "--listen", f"127.0.0.1:{free_port()}", timeout=30), "missing.toml")


@pytest.mark.dlog_only
def test_broker_listen_port_in_use(broker, dlog_bin, tmp_path):
    """A second broker on a taken port fails fast and names the address."""
    failed(run(dlog_bin, "broker", "--listen", broker, "--data-dir", str(tmp_path / "d2"), timeout=30),
           broker.rsplit(":", 1)[1])


@pytest.mark.dlog_only
def test_metrics_endpoint(broker, broker_proc, topic_name):
    """--metrics-listen serves a Prometheus text page."""
    import urllib.request
    create_topic(broker, topic_name, 1)
    ck_produce(broker, topic_name, [Rec(b"k", b"v")])
    with urllib.request.urlopen(f"http://127.0.0.1:{broker_proc.metrics_port}/metrics", timeout=10) as r:
        assert r.status == 200
        body = r.read().decode()
    samples = [line for line in body.splitlines() if line and not line.startswith("#")]
    assert samples, f"no metric samples in:\n{body[:2000]}"


def test_a_closed_stdout_ends_the_tool_quietly(broker, dlog_bin, topic_name):
    """`dlog consume T --from-beginning | head -1`: the reader goes away after one line;
    the tool ends without a panic or a backtrace (it used to panic on the broken pipe).
    400 KB of records: more than a pipe buffers, so the tool does write to the closed pipe."""
    create_topic(broker, topic_name, 1)
    ck_produce(broker, topic_name, [Rec(b"k", b"v" * 200) for _ in range(2000)], partition=0)
    p = subprocess.Popen([str(dlog_bin), "consume", "--bootstrap", broker, topic_name, "--from-beginning",
                          "--timeout-ms", "5000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()  # as `head -1` does
    _, err = p.communicate(timeout=T)
    assert b"panicked" not in err and b"backtrace" not in err.lower(), err.decode(errors="replace")
