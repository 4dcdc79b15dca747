"""The container image without a Docker engine: the Dockerfile's wheel, installed and started.

The wheel is built from exactly the files the Dockerfile copies, with the Dockerfile's own
``pip wheel`` command; it is installed with its dependencies into a fresh virtualenv (as the build
stage does) and started with the image's ENTRYPOINT + CMD and ENV, a config file in place of the
mounted one and the secrets in the environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.factories import sign
from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = "wheel-webhook-secret-9f2c"

pytestmark = pytest.mark.slow


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            logical.append(pending.strip())
            pending = ""
    return [(s.split(None, 1)[0].upper(), s.split(None, 1)[1]) for s in logical]


def stage(dockerfile: Path, name: str) -> list[tuple[str, str]]:
    """The instructions of the stage ``FROM … AS name``."""
    found: list[tuple[str, str]] = []
    current = None
    for op, args in instructions(dockerfile):
        if op == "FROM":
            current = args.split()[-1] if " AS " in args.upper() else None
            continue
        if current == name:
            found.append((op, args))
    return found


def runtime_env(dockerfile: Path) -> dict[str, str]:
    """The runtime stage's ENV, as ``KEY=value`` pairs (``$PATH`` left for the caller)."""
    env: dict[str, str] = {}
    for op, args in stage(dockerfile, "runtime"):
        if op == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(args))
    return env


def command(dockerfile: Path) -> list[str]:
    """ENTRYPOINT followed by CMD, both in exec (JSON) form."""
    parts = dict(stage(dockerfile, "runtime"))
    return [*json.loads(parts["ENTRYPOINT"]), *json.loads(parts["CMD"])]


def build_wheel(dockerfile: Path, tmp: Path) -> Path:
    """Copy what the build stage COPYs into a context and run its ``pip wheel`` there."""
    context = tmp / "context"
    context.mkdir()
    runs = []
    for op, args in stage(dockerfile, "build"):
        if op == "COPY":
            *sources, _ = args.split()
            for source in sources:
                target = context / source
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("*.pyc"))
                else:
                    shutil.copy2(ROOT / source, target)
        elif op == "RUN" and args.startswith("pip wheel"):
            runs.append(args.replace("/wheels", str(tmp / "wheels")))
    assert len(runs) == 1, runs
    subprocess.run(
        [sys.executable, "-m", *shlex.split(runs[0])], cwd=context, check=True, capture_output=True
    )
    (wheel,) = (tmp / "wheels").glob("feedbot-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(ROOT / "Dockerfile", tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel and its runtime dependencies, as the build stage makes."""
    path = tmp_path_factory.mktemp("venv") / "feedbot"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    subprocess.run(
        [str(path / "bin" / "pip"), "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    return path


def test_the_wheel_packages_the_migrations_and_nothing_else(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    versions = ROOT / "feedbot" / "store" / "migrations" / "versions"
    for script in versions.glob("*.py"):
        assert f"feedbot/store/migrations/versions/{script.name}" in names
    for name in ("env.py", "script.py.mako"):
        assert f"feedbot/store/migrations/{name}" in names
    assert "feedbot/py.typed" in names
    for template in (ROOT / "feedbot" / "digest" / "templates").glob("*.j2"):
        assert f"feedbot/digest/templates/{template.name}" in names  # the pages render from them
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "charts/"))]


def test_the_image_bakes_in_no_secret_and_runs_as_non_root() -> None:
    dockerfile = ROOT / "Dockerfile"
    for op, args in instructions(dockerfile):
        if op in ("ENV", "ARG"):
            assert not any(word in args.upper() for word in ("TOKEN", "SECRET", "PASSWORD"))
    user = [args for op, args in stage(dockerfile, "runtime") if op == "USER"]
    assert user and not user[-1].startswith(("0", "root"))
    assert runtime_env(dockerfile)["FEEDBOT_CONFIG"] == "/etc/feedbot/feedbot.yaml"
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert [line for line in ignored if line and not line.startswith("#")][0] == "*"


def test_the_installed_wheel_serves_as_the_image_does(venv: Path, tmp_path: Path) -> None:
    dockerfile = ROOT / "Dockerfile"
    port = free_port()
    config = tmp_path / "feedbot.yaml"
    config.write_text(
        f"database_url: sqlite:///{tmp_path / 'feedbot.db'}\nserver:\n  port: {port}\n"
    )
    env = {
        **runtime_env(dockerfile),
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "FEEDBOT_CONFIG": str(config),  # where the chart mounts its ConfigMap
        "FEEDBOT_WEBHOOK_SECRET": SECRET,
    }
    argv = command(dockerfile)
    argv[0] = str(venv / "bin" / argv[0])
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        # Its own process group: whatever happens, serve and its decoder process end here.
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _check_serving(f"http://127.0.0.1:{port}", proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                status = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                status = None  # SIGTERM did not end it in time: that fails the test below
            if proc.poll() is None or status is None:
                os.killpg(proc.pid, signal.SIGKILL)  # before reaping: the group id is still ours
                proc.wait()
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # a child left behind
    text = log.read_text()
    assert status == 0, text
    assert SECRET not in text
    assert str(venv) in _installed_location(venv)


def _check_serving(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "feedbot serve exited"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "feedbot serve did not answer /healthz"
            time.sleep(0.2)
    assert httpx.get(f"{url}/readyz").json() == {"status": "ready"}
    body = b'{"service": "vault-service", "version": "2.0.0", "commit": "abc1234"}'
    answer = httpx.post(
        f"{url}/webhooks/deploy", content=body, headers={"X-Feedbot-Signature": sign(body, SECRET)}
    )
    # 202 with a release id means the packaged migrations created the tables.
    assert answer.status_code == 202, answer.text
    assert answer.json()["created"] is True


def _installed_location(venv: Path) -> str:
    probe = "import feedbot.store.migrations as m; print(m.__file__)"
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe], cwd="/", capture_output=True, check=True
    )
    return done.stdout.decode()
