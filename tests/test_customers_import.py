"""Importing customers and contracts from YAML: idempotent, and precise about bad entries."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from intake.cli import main
from intake.config import Config
from intake.customers import ImportError_, import_customers, parse_customers
from intake.db.tables import Contract
from tests.support.config import FIXED_NOW, ROOT
from tests.support.database import count


def test_importing_the_examples_twice_changes_nothing(
    cfg: Config, sessions: sessionmaker[Session]
) -> None:
    # `sessions` already imported the examples once.
    before = (
        count(sessions, "customers"),
        count(sessions, "contacts"),
        count(sessions, "contracts"),
    )
    with sessions.begin() as session:
        import_customers(
            session, parse_customers(ROOT / "examples" / "customers.yaml"), cfg, FIXED_NOW
        )
    assert before == (4, 5, 4)
    assert (
        count(sessions, "customers"),
        count(sessions, "contacts"),
        count(sessions, "contracts"),
    ) == before


def test_one_year_contracts_end_the_day_before_their_anniversary(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        ends = {
            c.model: (c.end, c.quota, c.points, c.hours) for c in session.scalars(select(Contract))
        }
    assert ends["basic"] == (date(2026, 12, 31), 30, None, None)
    assert ends["professional"] == (date(2027, 2, 28), 60, None, None)
    assert ends["points"] == (None, None, 120, None)
    assert ends["on_demand"] == (None, None, None, 20.0)


def test_an_update_in_the_file_updates_the_database(
    cfg: Config, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    changed = tmp_path / "c.yaml"
    changed.write_text(
        "customers:\n  - number: K-1003\n    name: Punkt & Partner KG\n    contracts:\n"
        "      - model: points\n        start: 2026-01-01\n        balance: 200\n",
        encoding="utf-8",
    )
    with sessions.begin() as session:
        import_customers(session, parse_customers(changed), cfg, FIXED_NOW)
    with sessions() as session:
        points = session.scalars(select(Contract).where(Contract.model == "points")).one()
    assert points.points == 200
    assert count(sessions, "contracts") == 4


BAD = """\
customers:
  - number: K-2001
    name: Gut GmbH
    contracts:
      - model: basic
        start: 2026-01-01
  - number: K-2002
    name: Schlecht AG
    contacts:
      - email: not-an-address
    contracts:
      - model: gold
        start: 2026-01-01
      - model: points
        start: 2026-02-30
  - number: K-2003
    name: Ohne Punkte
    contracts:
      - model: points
        start: 2026-01-01
"""


def test_bad_entries_are_reported_with_their_lines_and_nothing_is_imported(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")
    with pytest.raises(ImportError_) as err:
        parse_customers(path)
    message = str(err.value)
    assert f"{path}:10: customers[1].contacts[0].email" in message
    assert f"{path}:12: customers[1].contracts[0].model" in message
    assert f"{path}:14: customers[1].contracts[1].start" in message
    assert f"{path}:19: customers[2].contracts[0]: a points contract needs `balance`" in message
    assert "K-2001" not in message


def test_the_command_reports_errors_and_exits_1(
    cfg: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")
    monkeypatch.setenv("INTAKE_DATABASE__URL", cfg.database.url)
    assert main(["--config", str(ROOT / "config.yaml"), "customers", "import", str(path)]) == 1
    assert "nothing imported" in capsys.readouterr().err
