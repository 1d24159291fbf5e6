"""What the two Python drivers share: argument parsing, JSON-line output, pacing.

The contract is tests/clients/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

_OUT_LOCK = threading.Lock()


def emit(event: str, **fields) -> None:
    line = json.dumps({"event": event, **fields}, separators=(",", ":"))
    with _OUT_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def log(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)

    def cmd(name):
        s = sub.add_parser(name)
        s.add_argument("--bootstrap", required=True)
        return s

    s = cmd("admin-create")
    s.add_argument("--topic", required=True)
    s.add_argument("--partitions", type=int, required=True)
    s.add_argument("--replication-factor", type=int, default=1)
    s = cmd("admin-groups")
    s.add_argument("--group", required=True)
    s = cmd("admin-delete")
    s.add_argument("--topic", required=True)
    s = cmd("produce")
    s.add_argument("--topic", required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--keys", type=int, required=True)
    s.add_argument("--compression", required=True, choices=["gzip", "snappy", "lz4", "zstd"])
    s.add_argument("--rate", type=int, default=0)
    s = cmd("consume")
    s.add_argument("--topic", required=True)
    s.add_argument("--group", required=True)
    s.add_argument("--name", required=True)
    return p.parse_args(argv)


class Pacer:
    """Hands out at most `rate` records per second, in 10 ms steps (rate 0: no limit)."""

    def __init__(self, rate: int):
        self.rate = rate
        self.start = time.monotonic()

    def wait(self, sent: int) -> None:
        if self.rate <= 0:
            return
        due = self.start + sent / self.rate
        delay = due - time.monotonic()
        if delay > 0.01:
            time.sleep(delay)


def stdin_eof_event() -> threading.Event:
    """An event set when stdin reaches end of file (the harness's stop signal)."""
    ev = threading.Event()

    def watch():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            ev.set()

    threading.Thread(target=watch, name="stdin-eof", daemon=True).start()
    return ev


def main(run) -> None:
    args = parse_args()
    try:
        run(args)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - the contract: report and exit 1
        emit("error", msg=f"{type(e).__name__}: {e}")
        sys.exit(1)
