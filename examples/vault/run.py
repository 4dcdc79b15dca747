"""Start the whole vault stack as separate processes on free loopback ports, and stop it.

:func:`start_stack` runs the rates service, the vault API and (with a broker) the goblin, each
its own ``python -m`` process, and returns once each answers. :meth:`Stack.stop` sends SIGTERM
(so each flushes its spans), waits, and kills what is left. By hand::

    python -m examples.vault.run --version 2.0.0 --otlp-endpoint http://127.0.0.1:8080

runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import NoReturn

import httpx

from examples.vault import lifecycle, versions

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
TRACES_PATH = "/v1/traces"
#: One job queue for every stack this runner starts, so v1's and v2's goblins share it (and their
#: spans share a name) while other runners on the same broker keep their own.
RUN_QUEUE = f"vault.appraisals.{uuid.uuid4().hex[:8]}"


class StackError(RuntimeError):
    """A process of the stack did not start; the message ends with its log."""


@dataclass
class Process:
    """One running process of the stack and the file its output goes to."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class Stack:
    """A running vault stack; a context manager that stops it on exit."""

    version: str
    api_url: str
    rates_url: str
    database_url: str
    amqp_url: str | None
    queue: str
    workdir: Path
    processes: list[Process] = field(default_factory=list)

    def stop(self) -> None:
        """Stop the goblin, then the API, then the rates service; each flushes its spans."""
        while self.processes:
            self.processes.pop().stop()

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_stack(
    version: str,
    *,
    otlp_endpoint: str,
    database_url: str | None = None,
    amqp_url: str | None = None,
    queue: str = RUN_QUEUE,
    workdir: Path | None = None,
) -> Stack:
    """Start the rates service, the vault API and, with ``amqp_url``, the goblin.

    Args:
        version: ``1.0.0`` or ``2.0.0``.
        otlp_endpoint: where spans go: a base URL (``/v1/traces`` is appended) or the full
            traces URL.
        database_url: SQLAlchemy URL; a SQLite file in ``workdir`` when None.
        amqp_url: RabbitMQ URL; without it there is no goblin and the API does jobs itself.
        queue: the job queue (its name is in the messaging span names).
        workdir: where logs (and the default database) go; a new temporary directory when None.

    Returns:
        The running stack. Stop it with :meth:`Stack.stop` or a ``with`` block.

    Raises:
        StackError: a process exited or did not answer within ``START_TIMEOUT_S``.
    """
    version = versions.resolve(version)
    workdir = workdir or Path(tempfile.mkdtemp(prefix=f"vault-{version}-"))
    stack = Stack(
        version=version,
        api_url=f"http://127.0.0.1:{free_port()}",
        rates_url=f"http://127.0.0.1:{free_port()}",
        database_url=database_url or f"sqlite:///{workdir / 'vault.db'}",
        amqp_url=amqp_url,
        queue=queue,
        workdir=workdir,
    )
    try:
        _start_all(stack, _environment(stack, otlp_endpoint))
    except BaseException:
        # Also on KeyboardInterrupt: nothing started here may outlive the call.
        stack.stop()
        raise
    return stack


def _start_all(stack: Stack, env: dict[str, str]) -> None:
    rates = _spawn(stack, "rates", ["examples.vault.rates", "--port", _port(stack.rates_url)], env)
    api_args = ["examples.vault.app", "--version", stack.version, "--port", _port(stack.api_url)]
    api = _spawn(stack, "api", api_args, env)
    _wait_healthy(rates, f"{stack.rates_url}/healthz")
    _wait_healthy(api, f"{stack.api_url}/healthz")
    if stack.amqp_url:
        ready = stack.workdir / f"goblin-{uuid.uuid4().hex[:6]}.ready"
        goblin_env = {**env, lifecycle.READY_ENV: str(ready)}
        goblin_args = ["examples.vault.goblin", "--version", stack.version]
        _wait_file(_spawn(stack, "goblin", goblin_args, goblin_env), ready)


def _environment(stack: Stack, otlp_endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VAULT_"))}
    endpoint = otlp_endpoint.rstrip("/")
    if endpoint.endswith(TRACES_PATH):
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = endpoint
    else:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    env.update(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            "VAULT_DATABASE_URL": stack.database_url,
            "VAULT_RATES_URL": stack.rates_url,
            "VAULT_QUEUE": stack.queue,
            lifecycle.PARENT_ENV: str(os.getpid()),
        }
    )
    if stack.amqp_url:
        env["VAULT_AMQP_URL"] = stack.amqp_url
    return env


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1]


def _spawn(stack: Stack, name: str, args: list[str], env: dict[str, str]) -> Process:
    log = stack.workdir / f"{name}-{stack.version}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in the terminal reaches the runner, which stops the
            # stack in order, rather than every process at once.
            start_new_session=True,
        )
    process = Process(name, popen, log)
    stack.processes.append(process)
    return process


def _wait_healthy(process: Process, url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        _check_alive(process)
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise StackError(
        f"{process.name}: no answer from {url} in {START_TIMEOUT_S:.0f}s\n{process.tail()}"
    )


def _wait_file(process: Process, path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not path.exists():
        _check_alive(process)
        if time.monotonic() > deadline:
            raise StackError(
                f"{process.name}: not consuming after {START_TIMEOUT_S:.0f}s\n{process.tail()}"
            )
        time.sleep(0.1)


def _check_alive(process: Process) -> None:
    code = process.popen.poll()
    if code is not None:
        raise StackError(f"{process.name}: exited with {code}\n{process.tail()}")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the stack of ``--version`` until Ctrl-C, printing its URLs."""
    parser = argparse.ArgumentParser(prog="python -m examples.vault.run")
    parser.add_argument("--version", default=None, help="1.0.0 or 2.0.0 ($VAULT_VERSION)")
    parser.add_argument("--otlp-endpoint", default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    parser.add_argument("--database-url", default=os.environ.get("VAULT_DATABASE_URL"))
    parser.add_argument("--amqp-url", default=os.environ.get("VAULT_AMQP_URL"))
    args = parser.parse_args(argv)
    if not args.otlp_endpoint:
        parser.error("--otlp-endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT) is required")
    version = versions.from_arguments(parser, args.version)
    signal.signal(signal.SIGTERM, _interrupt)
    with start_stack(
        version,
        otlp_endpoint=args.otlp_endpoint,
        database_url=args.database_url,
        amqp_url=args.amqp_url,
    ) as stack:
        _say(f"vault {stack.version}: API {stack.api_url}, rates {stack.rates_url}")
        _say(f"database {stack.database_url}; logs in {stack.workdir}")
        _say("goblin: " + (f"consuming {stack.queue}" if stack.amqp_url else "none (no broker)"))
        _say("Ctrl-C stops it.")
        try:
            while all(p.popen.poll() is None for p in stack.processes):
                time.sleep(0.5)
            _say("a process exited; stopping the stack")
        except KeyboardInterrupt:
            _say("stopping")


def _interrupt(*_args: object) -> NoReturn:
    """SIGTERM stops the stack as Ctrl-C does."""
    raise KeyboardInterrupt


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
