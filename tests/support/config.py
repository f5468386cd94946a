"""Where the tests run and what they run on: the repository, CI or not, a fixed instant, a
configuration for one test."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from intake.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"

# Saturday 28.11.2026, 10:00 in Berlin: a fixed instant for tests that do not care.
FIXED_NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def missing_service(reason: str) -> None:
    """In CI a missing service is a failure; on a developer machine, a skip that says why."""
    if IN_CI:
        pytest.fail(f"required service missing in CI: {reason}")
    pytest.skip(reason)


def make_config(tmp_path: Path, db_url: str, **overrides: str) -> Config:
    env = {
        "INTAKE_DATABASE__URL": db_url,
        "INTAKE_RELAY__MAILDIR": str(tmp_path / "maildir"),
        "INTAKE_SMTP__PORT": "0",
        "INTAKE_CLASSIFIER__MODELS_DIR": str(ROOT / "models"),
        "INTAKE_OUTBOX__POLL_SECONDS": "0.2",
        "INTAKE_WEB__PORT": "0",
        **overrides,
    }
    return load_config(ROOT / "config.yaml", env)
