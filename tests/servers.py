"""Real HTTP servers on loopback for tests: an ASGI app under uvicorn in a thread."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


class AppServer:
    """uvicorn on 127.0.0.1:<free port> in a thread, serving ``app``; a context manager."""

    def __init__(self, app: Any) -> None:
        self.socket = socket.socket()
        # A socket handed to uvicorn keeps Nagle's algorithm on (uvicorn sets TCP_NODELAY only
        # on sockets it binds itself): without this every answer stalls ~40 ms on delayed ACKs.
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]})

    def __enter__(self) -> AppServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()
        assert not self.thread.is_alive()
