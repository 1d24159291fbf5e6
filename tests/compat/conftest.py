"""Fixtures for the DLog Kafka-compatibility suite.

Target selection (environment):
  DLOG_TEST_TARGET=dlog   (default) start the DLog binary at $DLOG_BIN
  DLOG_TEST_TARGET=kafka  start Apache Kafka through scripts/kafka.sh (the reference:
                          a test failing there is a bug in the test)
  DLOG_BIN                path to the dlog binary (default: <repo>/target/debug/dlog,
                          or $CARGO_TARGET_DIR/debug/dlog)

Markers:
  dlog_only   needs a DLog-specific behaviour (binary flags, exit codes, metrics); skipped
              when the target is Kafka
  needs_cli   runs the dlog CLI binary; skipped when the target is Kafka and no binary exists
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGET = os.environ.get("DLOG_TEST_TARGET", "dlog").strip().lower()
if TARGET not in ("dlog", "kafka"):
    raise pytest.UsageError(f"DLOG_TEST_TARGET must be 'dlog' or 'kafka', not {TARGET!r}")

START_TIMEOUT = float(os.environ.get("DLOG_TEST_START_TIMEOUT", "60"))
STOP_TIMEOUT = float(os.environ.get("DLOG_TEST_STOP_TIMEOUT", "30"))


def default_dlog_bin() -> Path:
    if os.environ.get("DLOG_BIN"):
        return Path(os.environ["DLOG_BIN"])
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR") or (REPO / "target"))
    if not target_dir.is_absolute():
        target_dir = REPO / target_dir
    return target_dir / "debug" / "dlog"


DLOG_BIN = default_dlog_bin()
KAFKA_SH = REPO / "scripts" / "kafka.sh"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now and never handed out before in this session. The kernel may give
    a just-released port again: two nodes of one cluster once got the same port (one's
    RPC listener, the other's Kafka listener), so that the second node could not listen
    while its port looked open."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no fresh free port in 1000 tries")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (not reaped by its parent) counts as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _tail(path: Path, lines: int) -> str:
    try:
        data = _ANSI.sub("", path.read_text(errors="replace")).splitlines()
    except OSError:
        return ""
    return "\n".join(data[-lines:])


# every broker started in this session, for failure reports
_BROKERS: list["Broker"] = []


class Broker:
    """One broker process (DLog or Apache Kafka) owning a data directory.

    start()/stop()/kill()/restart() keep the same data dir and the same ports, so
    a restarted broker is reachable at the same bootstrap address.
    """

    def __init__(self, target: str, workdir: Path, name: str = "broker"):
        self.target = target
        self.name = name
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.metrics_port = free_port()
        # the port clients are told to connect to (a test's proxy); None: self.port
        self.advertised_port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None
        self.starts = 0
        # extra environment for the DLog process (DLOG_* settings)
        self.env: dict[str, str] = {}
        self.last_returncode: int | None = None
        _BROKERS.append(self)

    # --- addresses / logs -------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        if self.target == "kafka":
            return self.data_dir / "server.log"
        return self.workdir / f"stderr.{self.starts}.log"

    def log_tail(self, lines: int = 80) -> str:
        if self.target == "kafka":
            return (_tail(self.data_dir / "kafka.out", 20) + "\n" +
                    _tail(self.data_dir / "server.log", lines))
        parts = []
        for i in range(max(1, self.starts - 1), self.starts + 1):
            p = self.workdir / f"stderr.{i}.log"
            if p.exists():
                parts.append(f"--- {p.name} ---\n{_tail(p, lines)}")
        return "\n".join(parts)

    def rss_bytes(self) -> int:
        """The process's resident set size, from /proc."""
        pid = self.proc.pid if self.target == "dlog" and self.proc else self.pid
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmRSS for pid {pid}")

    # --- lifecycle -----------------------------------------------------------------------
    def alive(self) -> bool:
        if self.target == "dlog":
            return self.proc is not None and self.proc.poll() is None
        return self.pid is not None and _pid_alive(self.pid)

    def start(self) -> "Broker":
        assert not self.alive(), "broker already running"
        self.starts += 1
        if self.target == "kafka":
            self._start_kafka()
        else:
            self._start_dlog()
        return self

    def _start_dlog(self):
        if not DLOG_BIN.exists():
            pytest.fail(f"DLog binary not found at {DLOG_BIN} (build it with "
                        "`cargo build --bin dlog` or set DLOG_BIN)", pytrace=False)
        cmd = [str(DLOG_BIN), "broker",
               "--data-dir", str(self.data_dir),
               "--listen", self.bootstrap,
               "--metrics-listen", f"127.0.0.1:{self.metrics_port}"]
        if self.advertised_port:
            cmd += ["--advertise", f"127.0.0.1:{self.advertised_port}"]
        errf = open(self.log_path, "wb")
        try:
            env = dict(os.environ, NO_COLOR="1", **self.env)
            env.setdefault("RUST_BACKTRACE", "1")
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=errf,
                                         stderr=subprocess.STDOUT, cwd=self.workdir, env=env)
        finally:
            errf.close()
        self.pid = self.proc.pid
        deadline = time.monotonic() + START_TIMEOUT
        while not port_open(self.port):
            if self.proc.poll() is not None:
                pytest.fail(f"dlog broker exited with {self.proc.returncode} during startup:\n"
                            f"{' '.join(cmd)}\n{self.log_tail()}", pytrace=False)
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"dlog broker did not accept connections on {self.bootstrap} "
                            f"within {START_TIMEOUT}s:\n{self.log_tail()}", pytrace=False)
            time.sleep(0.05)

    def _start_kafka(self):
        env = dict(os.environ)
        if self.advertised_port:
            env["KAFKA_ADVERTISED_PORT"] = str(self.advertised_port)
        r = subprocess.run([str(KAFKA_SH), "start", str(self.data_dir), str(self.port)],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                           timeout=START_TIMEOUT + 300)
        if r.returncode != 0:
            pytest.fail(f"scripts/kafka.sh start failed ({r.returncode}):\n{r.stdout}\n{r.stderr}",
                        pytrace=False)
        self.pid = int((self.data_dir / "kafka.pid").read_text().strip())

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM and wait. Returns the exit code (None for Kafka: not our child)."""
        if not self.alive():
            return self.proc.returncode if (self.target == "dlog" and self.proc) else None
        if self.target == "dlog":
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"dlog broker did not exit within {timeout}s of SIGTERM:\n"
                            f"{self.log_tail()}", pytrace=False)
            self.last_returncode = rc
            return rc
        os.kill(self.pid, signal.SIGTERM)
        self._wait_pid_gone(timeout + 30)
        (self.data_dir / "kafka.pid").unlink(missing_ok=True)
        return None

    def kill(self):
        """SIGKILL: no chance to flush or clean up."""
        if self.target == "dlog":
            if self.proc and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            return
        if self.pid and _pid_alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
            self._wait_pid_gone(30)
        (self.data_dir / "kafka.pid").unlink(missing_ok=True)

    def _wait_pid_gone(self, timeout: float):
        deadline = time.monotonic() + timeout
        while _pid_alive(self.pid):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
            time.sleep(0.05)
        # the thread-group leader turns zombie before the JVM's other threads are gone; the
        # listening socket closes only with the last of them
        deadline = time.monotonic() + timeout
        while port_open(self.port):
            if time.monotonic() > deadline:
                pytest.fail(f"port {self.port} still accepts connections after Kafka pid "
                            f"{self.pid} exited", pytrace=False)
            time.sleep(0.05)

    def restart(self) -> int | None:
        rc = self.stop()
        self.start()
        return rc


def _new_broker(tmp_root: Path, name: str) -> Broker:
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp_root))
    return Broker(TARGET, workdir, name)


def _assert_clean_exit(b: Broker, rc):
    if b.target == "dlog":
        assert rc == 0, (f"dlog broker exited with {rc} after SIGTERM (expected 0):\n"
                         f"{b.log_tail()}")


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def target() -> str:
    return TARGET


def _running_broker(tmp_path_factory, name, env: dict | None = None):
    """Starts a broker, yields it, and at teardown stops it and checks it exits cleanly."""
    b = _new_broker(tmp_path_factory.getbasetemp(), name)
    b.env = dict(env or {})
    b.start()
    yield b
    if b.alive():
        rc = b.stop()
        _assert_clean_exit(b, rc)


@pytest.fixture(scope="session")
def _session_broker(tmp_path_factory):
    yield from _running_broker(tmp_path_factory, "shared")


@pytest.fixture
def broker(_session_broker) -> str:
    """Bootstrap address of the shared broker. The test fails if it kills the broker."""
    b = _session_broker
    if not b.alive():  # died in an earlier test: give later tests a working broker
        b.start()
    yield b.bootstrap
    if not b.alive():
        rc = b.proc.returncode if b.proc else None
        tail = b.log_tail()
        b.start()
        pytest.fail(f"broker process died during the test (exit {rc}):\n{tail}", pytrace=False)


@pytest.fixture
def broker_proc(_session_broker) -> Broker:
    """The shared broker's process handle (for tests that inspect it)."""
    return _session_broker


@pytest.fixture
def own_broker(tmp_path_factory, request):
    """A fresh, private broker (own data dir) that the test may SIGKILL/restart. A test
    marked `broker_env({...})` starts it with those DLOG_* settings."""
    mark = request.node.get_closest_marker("broker_env")
    yield from _running_broker(tmp_path_factory, "own", mark.args[0] if mark else None)


@pytest.fixture
def topic_name(request) -> str:
    import uuid
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60].strip("-")
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def dlog_bin() -> Path:
    if not DLOG_BIN.exists():
        if TARGET == "kafka":
            pytest.skip(f"no dlog binary at {DLOG_BIN}")
        pytest.fail(f"DLog binary not found at {DLOG_BIN}", pytrace=False)
    return DLOG_BIN


# --- hooks -----------------------------------------------------------------------------------

class _DedupFilter(logging.Filter):
    """Client libraries repeat the same error per batch; keep the first few of each."""

    def __init__(self, limit: int = 3):
        super().__init__()
        self.limit = limit
        self.seen: dict[str, int] = {}

    def filter(self, record):
        key = f"{record.name}:{record.levelno}:{record.getMessage()[:200]}"
        n = self.seen.get(key, 0) + 1
        self.seen[key] = n
        return n <= self.limit


_LOG_FILTER = _DedupFilter()


def pytest_runtest_setup(item):
    _LOG_FILTER.seen.clear()


def pytest_configure(config):
    # filters do not apply to records propagated from child loggers: attach to each
    for name in ("kafka", "kafka.producer.sender", "kafka.producer.transaction_manager",
                 "kafka.producer.kafka", "kafka.conn", "kafka.client_async", "kafka.net",
                 "kafka.consumer.fetcher", "kafka.consumer.group", "kafka.coordinator",
                 "kafka.admin.client", "kafka.cluster"):
        logging.getLogger(name).addFilter(_LOG_FILTER)
    config.addinivalue_line("markers", "dlog_only: needs a DLog-specific feature; skipped against Kafka")
    config.addinivalue_line("markers", "broker_env(env): DLOG_* settings for the own_broker fixture")
    config.addinivalue_line("markers", "needs_cli: runs the dlog CLI binary")
    config.addinivalue_line("markers", "later_issue(name): a capability a later issue builds; against DLog "
                            "the test must fail until then (strict xfail), against Kafka it must pass")


def pytest_report_header(config):
    if TARGET == "kafka":
        return f"compat target: Apache Kafka via {KAFKA_SH.relative_to(REPO)}"
    return f"compat target: DLog at {DLOG_BIN}"


def pytest_collection_modifyitems(config, items):
    if TARGET != "kafka":
        for item in items:
            mark = item.get_closest_marker("later_issue")
            if mark is not None:
                item.add_marker(pytest.mark.xfail(strict=True, reason=f"not built yet: issue {mark.args[0]!r}"))
    if TARGET == "kafka":
        skip = pytest.mark.skip(reason="DLog-only feature (target is Apache Kafka)")
        for item in items:
            if "dlog_only" in item.keywords:
                item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        used = [v for v in getattr(item, "funcargs", {}).values() if isinstance(v, Broker)]
        for b in dict.fromkeys(used):
            tail = b.log_tail(60)
            if tail.strip():
                rep.sections.append((f"{b.target} broker '{b.name}' log (tail) {b.workdir}", tail))
