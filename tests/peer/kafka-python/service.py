"""Stand-in for kafka-python's `test/service.py`, which the 3.0.12 sdist does not ship.

scripts/peer-suites.sh copies this file to `test/service.py` of the unpacked sdist.
`test/integration/fixtures.py` imports two names from it. The peer-suite run always
points the fixtures at an already running broker (KAFKA_URI), for which the fixtures
only construct an ExternalService; SpawnedService (starting a broker from a Kafka
distribution's bin/ scripts) is never used and refuses to run.
"""
import logging

__all__ = ["ExternalService", "SpawnedService"]

log = logging.getLogger(__name__)


class ExternalService:
    """A broker started outside the test session (by scripts/peer-suites.sh)."""

    def __init__(self, host, port):
        log.info("using the broker already running at %s:%d", host, port)
        self.host = host
        self.port = port

    def open(self):
        pass

    def close(self):
        pass

    def stop(self):
        pass

    def dump_logs(self):
        pass


class SpawnedService:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("the peer-suite run uses an external broker (KAFKA_URI); "
                           "spawning one from a Kafka distribution is not supported here")
