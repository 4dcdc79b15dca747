"""Real ``feedbot serve`` processes for functional tests."""

from __future__ import annotations

import contextlib
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
        ready_timeout: float = 30,
    ) -> None:
        self.port = free_port()
        base = os.environ if environ is None else environ
        env = {**base, "FEEDBOT_FAILPOINTS": failpoints, "FEEDBOT_LOG_LEVEL": "INFO"}
        self._path = log
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
            # Its own process group, so it can be ended with the children it starts (the OTLP
            # decoding processes, multiprocessing's resource tracker).
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            self._wait_ready(ready_timeout)
        except BaseException:
            # The caller never gets this object, so nobody else could stop the process.
            self._end_group()
            self._log.close()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._exited():
                return  # died already (a failpoint may fire on the first tick)
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"feedbot serve not ready within {timeout} s (log: {self._path})")

    def _exited(self, timeout: float = 0) -> bool:
        """Whether the process has exited (waiting up to ``timeout`` s), without reaping it.

        While it is unreaped its id stays taken, so its process group can still be signalled
        without any risk of reaching a process this test did not start.
        """
        if self.proc.returncode is not None:
            return True
        deadline = time.monotonic() + timeout
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        while os.waitid(os.P_PID, self.proc.pid, flags) is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def _end_group(self) -> None:
        """SIGKILL the process and whatever it started that is still running, then reap it."""
        if self.proc.returncode is None:  # not reaped yet: the group id is still its own
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def wait_killed(self, timeout: float = 30) -> None:
        """Wait for the process to die of SIGKILL; its children die with it."""
        if not self._exited(timeout):
            raise subprocess.TimeoutExpired(self.proc.args, timeout)
        self._end_group()
        assert self.proc.returncode == -signal.SIGKILL

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s; children left behind are killed either way."""
        if not self._exited():
            self.proc.terminate()
            self._exited(timeout=15)
        self._end_group()
        self._log.close()
