"""A TCP forwarder to a real server that a test can cut, to play "the server went down mid-run"."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    """`with TcpProxy(host, port) as proxy:` forwards 127.0.0.1:`proxy.port` to the target until `stop()`."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def __enter__(self) -> TcpProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Refuse new connections and drop the open ones."""
        with self._lock:
            sockets, self._sockets = [self._listener, *self._sockets], []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            for source, destination in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, destination), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, destination: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                destination.sendall(chunk)
        with contextlib.suppress(OSError):
            destination.shutdown(socket.SHUT_WR)
