"""A Kafka-frame-aware TCP proxy that cuts connections at chosen moments.

Clients connect to the proxy (the broker advertises the proxy's port), the proxy
forwards whole frames both ways. `cut_after_produce(every, limit)` makes it, for every
`every`-th Produce request, forward the request to the broker, wait for the broker's
answer and then close the client's connection instead of passing the answer on: the
broker has written the batch, the client never hears so and must retry. That is the
case idempotent producers exist for.
"""

from __future__ import annotations

import socket
import struct
import threading

PRODUCE = 0


def _read_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_frame(sock: socket.socket) -> bytes | None:
    head = _read_exact(sock, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">i", head)
    body = _read_exact(sock, size)
    return None if body is None else head + body


class CuttingProxy:
    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.every = 0
        self.limit = 0
        self.produce_seen = 0
        self.cuts = 0
        self.closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def cut_after_produce(self, every: int, limit: int):
        with self.lock:
            self.every, self.limit = every, limit

    def close(self):
        self.closed = True
        self.listener.close()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            doomed: set[int] = set()  # correlation ids whose answer must not arrive
            threading.Thread(target=self._to_broker, args=(client, upstream, doomed), daemon=True).start()
            threading.Thread(target=self._to_client, args=(upstream, client, doomed), daemon=True).start()

    def _to_broker(self, client, upstream, doomed):
        while True:
            frame = _read_frame(client)
            if frame is None:
                break
            api_key, _version, correlation = struct.unpack(">hhi", frame[4:12])
            if api_key == PRODUCE:
                with self.lock:
                    self.produce_seen += 1
                    if self.every and self.cuts < self.limit and self.produce_seen % self.every == 0:
                        doomed.add(correlation)
            try:
                upstream.sendall(frame)
            except OSError:
                break
        _close(client, upstream)

    def _to_client(self, upstream, client, doomed):
        while True:
            frame = _read_frame(upstream)
            if frame is None:
                break
            (correlation,) = struct.unpack(">i", frame[4:8])
            if correlation in doomed:
                with self.lock:
                    self.cuts += 1
                break  # the broker answered; the client never hears it
            try:
                client.sendall(frame)
            except OSError:
                break
        _close(client, upstream)


def _close(*socks):
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()
