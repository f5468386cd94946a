"""The `intake` command as a separate process, the way an operator runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support.config import ROOT

INTAKE = [sys.executable, "-m", "intake.cli", "--config", str(ROOT / "config.yaml")]


def environment(tmp_path: Path, db_url: str, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "INTAKE_DATABASE__URL": db_url,
        "INTAKE_SMTP__PORT": str(port),
        "INTAKE_WEB__PORT": "0",
        "INTAKE_RELAY__MAILDIR": str(tmp_path / "maildir"),
        "INTAKE_CLASSIFIER__MODELS_DIR": str(ROOT / "models"),
    }


def intake(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*INTAKE, *args], env=env, capture_output=True, text=True, timeout=120)


def wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"intake serve exited: {proc.stderr.read() if proc.stderr else ''}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("intake serve did not listen")
