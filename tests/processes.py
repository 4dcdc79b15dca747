"""Real ``feedbot serve`` processes for functional tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Feedbot:
    """A real ``feedbot serve`` process."""

    def __init__(
        self,
        config: Path,
        log: Path,
        failpoints: str = "",
        environ: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.port = free_port()
        base = os.environ if environ is None else environ
        env = {**base, "FEEDBOT_FAILPOINTS": failpoints, "FEEDBOT_LOG_LEVEL": "INFO"}
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "feedbot",
                "serve",
                "--config",
                str(config),
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,  # ``python -m`` puts it first on sys.path, before PYTHONPATH
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return  # died already (a failpoint may fire on the first tick)
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("feedbot serve did not become ready")

    def wait_killed(self, timeout: float = 30) -> None:
        assert self.proc.wait(timeout=timeout) == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
