"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, the shipped model, a clock."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from classifier.model import PriorityModel
from classifier.registry import ModelRegistry
from intake.config import Config, load_config
from intake.customers import import_customers, parse_customers
from intake.db.engine import make_engine, make_sessions
from intake.db.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
IN_CI = os.environ.get("CI", "").lower() == "true"

# Saturday 28.11.2026, 10:00 in Berlin: a fixed instant for tests that do not care.
FIXED_NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing_service(reason: str) -> None:
    """In CI a missing service is a failure; on a developer machine, a skip that says why."""
    if IN_CI:
        pytest.fail(f"required service missing in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def model() -> PriorityModel:
    return ModelRegistry(ROOT / "models").load()


@dataclass(frozen=True)
class Dovecot:
    port: int
    user: str
    password: str
    workdir: Path


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    """A real Dovecot IMAP server on loopback, started by the project's own script."""
    if shutil.which("dovecot") is None:
        missing_service(
            "dovecot is not installed (`make test` installs it: scripts/test-services.sh)"
        )
    # Dovecot's auth process (an unprivileged user) must be able to enter every parent
    # directory, which pytest's private temporary tree does not allow.
    workdir = Path(tempfile.mkdtemp(prefix="intake-dovecot-"))
    workdir.chmod(0o755)
    server = Dovecot(free_port(), "support@example.com", "imap-secret", workdir)
    result = subprocess.run(
        [
            "bash",
            str(ROOT / "scripts" / "start-dovecot.sh"),
            str(workdir),
            str(server.port),
            server.user,
            server.password,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        missing_service(f"dovecot did not start: {result.stdout}{result.stderr}")
    yield server
    pid = int((workdir / "dovecot.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> str:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3) as conn:
            conn.execute("select 1")
    except psycopg.OperationalError as exc:
        missing_service(f"PostgreSQL at 127.0.0.1:5432: {exc}")
    return PG_ADMIN


def create_pg_database(admin_url: str) -> str:
    name = f"intake_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_pg_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated database of each kind; PostgreSQL gets a database of its own."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'intake.db'}"
        upgrade(url)
        yield url
        return
    yield request.getfixturevalue("pg_url")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database, for tests where the database kind does not matter."""
    url = f"sqlite:///{tmp_path / 'intake.db'}"
    upgrade(url)
    return url


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A migrated PostgreSQL database of the test's own (several instances share it)."""
    name = create_pg_database(pg_server)
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        drop_pg_database(pg_server, name)


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


@pytest.fixture
def cfg(tmp_path: Path, db_url: str) -> Config:
    return make_config(tmp_path, db_url)


@pytest.fixture
def engine(cfg: Config) -> Iterator[Engine]:
    engine = make_engine(cfg.database.url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine, cfg: Config) -> sessionmaker[Session]:
    """Sessions on a database that holds the example customers."""
    factory = make_sessions(engine)
    with factory.begin() as session:
        import_customers(
            session, parse_customers(ROOT / "examples" / "customers.yaml"), cfg, FIXED_NOW
        )
    return factory


def count(sessions: sessionmaker[Session], table: str, where: str = "1=1") -> int:
    with sessions() as session:
        return int(
            session.execute(text(f"select count(*) from {table} where {where}")).scalar_one()
        )
