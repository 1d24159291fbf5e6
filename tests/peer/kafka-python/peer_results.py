"""pytest plugin (`-p peer_results`): one JSON line per test, appended to
$PEER_RESULTS_FILE as soon as the test's teardown ends (a run killed by a timeout
keeps the tests it finished).

Each line: {"test": nodeid, "status": "pass"|"fail"|"skip", "seconds": float,
"detail": first line of the failure or skip reason}. A failure in setup or teardown
counts as a failure of the test.
"""
import json
import os

_state = {}


def _first_line(report):
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message.strip().splitlines()[0] if crash.message.strip() else ""
    text = str(report.longrepr or "").strip()
    return text.splitlines()[-1] if text else ""


def pytest_runtest_logreport(report):
    st = _state.setdefault(report.nodeid, {"status": "pass", "seconds": 0.0, "detail": ""})
    st["seconds"] += report.duration
    if report.failed and st["status"] != "fail":
        st["status"] = "fail"
        st["detail"] = f"{report.when}: {_first_line(report)}"[:400]
    elif report.skipped and st["status"] == "pass":
        st["status"] = "skip"
        st["detail"] = _first_line(report)[:400]
    if report.when == "teardown":
        _write(report.nodeid, _state.pop(report.nodeid))


def _write(nodeid, st):
    path = os.environ.get("PEER_RESULTS_FILE")
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps({"test": nodeid, "status": st["status"],
                            "seconds": round(st["seconds"], 2),
                            "detail": st["detail"]}) + "\n")
