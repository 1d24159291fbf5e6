"""The six-client compatibility matrix (issue: consumer groups, idempotence, clients).

One test per client family runs the scenario of tests/clients/README.md against the
target broker (DLog, or Apache Kafka with DLOG_TEST_TARGET=kafka) and fails when any
step fails. At the end of the session the results are merged into
docs/COMPATIBILITY.md (the other target's column is kept) and printed.

DLOG_MATRIX_CLIENTS=java,sarama limits the run to some clients.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import matrix
import pytest
from conftest import KAFKA_SH, REPO, TARGET

SELECTED = [c.strip() for c in os.environ.get("DLOG_MATRIX_CLIENTS", ",".join(matrix.CLIENTS)).split(",") if c.strip()]
_RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="session")
def launchers(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Builds every driver family once; returns family -> (launcher dir, build log)."""
    out = Path(os.environ.get("DLOG_CACHE_DIR", Path.home() / ".cache" / "dlog")) / "clients" / "bin"
    built = {}
    for family in sorted({matrix.CLIENTS[c][0] for c in SELECTED}):
        r = subprocess.run([str(REPO / "scripts" / "clients.sh"), "build", str(out), family],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1200)
        built[family] = (r.returncode == 0, (r.stdout + r.stderr)[-4000:])
    return {"dir": out, "built": built}


@pytest.fixture(scope="session", autouse=True)
def _write_matrix():
    yield
    if not _RESULTS:
        return
    fields = {}
    if TARGET == "kafka":
        r = subprocess.run([str(KAFKA_SH), "version"], capture_output=True, text=True)
        fields["version"] = r.stdout.strip()
    matrix.record_results(TARGET, _RESULTS, **fields)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("client", SELECTED)
def test_client_scenario(client, launchers, own_broker, tmp_path):
    family = matrix.CLIENTS[client][0]
    ok, build_log = launchers["built"][family]
    if not ok:
        _RESULTS[client] = {k: ("FAIL" if k == "create" else "skip", "driver did not build") for k, _ in matrix.STEPS}
        pytest.fail(f"the {family} drivers did not build:\n{build_log}", pytrace=False)
    s = matrix.Scenario(client, own_broker, launchers["dir"], tmp_path)
    s.run()
    _RESULTS[client] = s.results
    report = "\n".join(f"  {status:>4}  {label}: {s.results[key][1]}"
                       for key, label in matrix.STEPS for status in [s.results[key][0]])
    print(f"{client} against {TARGET} (logs in {tmp_path}):\n{report}")
    bad = [key for key, _ in matrix.STEPS if s.results[key][0] in ("FAIL", "skip")]
    assert not bad, f"{client}: steps failed: {bad}\n{report}"
