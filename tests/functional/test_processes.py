"""The test helper that starts ``feedbot serve`` leaves nothing running when start-up fails."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.processes import Feedbot


def commands_naming(path: Path) -> list[str]:
    """Command lines of the running processes that mention ``path``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:  # it ended meanwhile
            continue
        if str(path).encode() in argv:
            found.append(b" ".join(argv).decode(errors="replace"))
    return found


def test_serve_that_is_not_ready_in_time_is_killed(tmp_path: Path) -> None:
    config = tmp_path / "feedbot.yaml"
    config.write_text(yaml.safe_dump({"database_url": f"sqlite:///{tmp_path / 'f.db'}"}))
    with pytest.raises(AssertionError, match="not ready within"):
        Feedbot(config, tmp_path / "serve.log", ready_timeout=0.2)
    assert commands_naming(config) == []
