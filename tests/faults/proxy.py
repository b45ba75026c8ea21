"""A Unix-socket proxy in front of the real engine, for injecting engine faults.

``stop()`` closes the listener and cuts every connection (the engine "goes away");
``start()`` brings it back (the engine "restarted"); ``silent`` (settable at any time)
accepts connections and stops answering on all of them (a hung engine); ``hang_on``
(a regex over request bytes) hangs just the calls it matches, e.g. ``rb"/attach\\?"``;
``mute_answer_on`` passes the calls it matches to the engine, which carries them out,
but never passes their answers back (an engine that is slow to answer).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from pathlib import Path


class EngineProxy:
    def __init__(
        self, path: Path, target: str = "/var/run/docker.sock", silent: bool = False
    ) -> None:
        self.path = path
        self.target = target
        self.silent = silent
        self.hang_on: re.Pattern[bytes] | None = None
        self.hung = 0  # how many requests hang_on swallowed
        self.mute_answer_on: re.Pattern[bytes] | None = None
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> None:
        if self.path.exists():
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(256)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            # Unlink first and wake the accepting thread: a listener closed while a thread
            # blocks in accept() keeps listening, and would quietly proxy a connection made
            # during the "outage".
            if self.path.exists():
                self.path.unlink()
            if self._listener is not None:
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                if listener is not self._listener:  # stopped while accepting
                    client.close()
                    return
                self._conns.append(client)
            if self.silent:
                continue  # accept, read nothing, answer nothing
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if listener is not self._listener:
                    client.close()
                    upstream.close()
                    return
                self._conns.append(upstream)
            muted = threading.Event()  # this connection's answers are dropped
            threading.Thread(
                target=self._pipe, args=(client, upstream, muted, True), daemon=True
            ).start()
            threading.Thread(target=self._pipe, args=(upstream, client, muted), daemon=True).start()

    def _pipe(
        self,
        source: socket.socket,
        sink: socket.socket,
        muted: threading.Event,
        requests: bool = False,
    ) -> None:
        swallowing = False
        try:
            while data := source.recv(65536):
                if requests and not swallowing and self.hang_on and self.hang_on.search(data):
                    swallowing = True  # this call, and the rest of its connection, hang
                    self.hung += 1
                if requests and self.mute_answer_on and self.mute_answer_on.search(data):
                    muted.set()
                    self.hung += 1
                if not requests and muted.is_set():
                    continue  # the engine answered; nobody hears it
                if self.silent or swallowing:
                    continue  # a hung engine: bytes go in, nothing comes out
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
