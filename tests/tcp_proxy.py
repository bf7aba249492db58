"""A small threaded TCP proxy on 127.0.0.1 to simulate server outages in tests.

    proxy = TcpProxy("127.0.0.1", server_port).start()
    url = f"mongodb://127.0.0.1:{proxy.port}/db"
    proxy.pause(3)      # close every live connection and refuse new ones for 3 s
    proxy.drop_all()    # close every live connection (new ones are accepted)
    proxy.stop()

While paused, new connections are accepted and closed at once (the client sees the connection
reset, as when a server goes away). Only 127.0.0.1 is ever bound.
"""
from __future__ import annotations

import contextlib
import select
import socket
import threading
import time


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, listen_port: int = 0):
        self.target = (target_host, int(target_port))
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", listen_port))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._paused_until = 0.0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self.accepted = 0
        self.refused = 0
        self.dropped = 0

    # ------------------------------------------------------------------ control
    def start(self) -> "TcpProxy":
        self._thread.start()
        return self

    @property
    def paused(self) -> bool:
        return time.monotonic() < self._paused_until

    def pause(self, seconds: float) -> None:
        """Close all live connections and refuse new ones for ``seconds``."""
        with self._lock:
            self._paused_until = time.monotonic() + seconds
        self.drop_all()

    def resume(self) -> None:
        with self._lock:
            self._paused_until = 0.0

    def drop_all(self) -> int:
        """Close every live connection (both directions); returns how many sockets were closed."""
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for s in conns:
            _close(s)
        self.dropped += len(conns)
        return len(conns)

    def stop(self) -> None:
        self._stopped.set()
        _close(self._listener)
        self.drop_all()
        self._thread.join(2)

    def __enter__(self) -> "TcpProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals
    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                r, _, _ = select.select([self._listener], [], [], 0.1)
                if not r:
                    continue
                client, _ = self._listener.accept()
            except OSError:
                if self._stopped.is_set():
                    return
                continue
            if self.paused:
                self.refused += 1
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns.update((client, upstream))
            self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True, name="tcp-proxy-pump").start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            _close(src)
            _close(dst)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()
