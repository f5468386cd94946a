"""The one home of each business rule: what a request uses up, its deadline, a reply's context."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from intake.config import Config
from intake.delivery import may_mail
from intake.domain import ContractModel, ContractView, Priority
from intake.replies import ReplyKind, reply_context
from intake.rules.charges import LedgerKind, charge_for
from intake.rules.deadline import Deadlines
from tests.support.config import make_config

BASIC = ContractView(1, ContractModel.BASIC, date(2026, 1, 1), date(2026, 12, 31), quota=30)
POINTS = ContractView(2, ContractModel.POINTS, date(2026, 1, 1), None, points=120)
ON_DEMAND = ContractView(3, ContractModel.ON_DEMAND, date(2026, 1, 1), None, hours=20)
CATALOGUE = {Priority.KRITISCH: 8, Priority.HOCH: 5, Priority.MITTEL: 3, Priority.NIEDRIG: 1}
FRIDAY_1600_BERLIN = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


def config(tmp_path: Path) -> Config:
    return make_config(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}")


def test_a_request_uses_one_of_the_year_or_its_catalogue_price_and_on_demand_nothing() -> None:
    request = charge_for(BASIC, Priority.KRITISCH, CATALOGUE)
    assert request is not None and (request.kind, request.amount) == (LedgerKind.REQUEST, -1)
    points = charge_for(POINTS, Priority.HOCH, CATALOGUE)
    assert points is not None and (points.kind, points.amount) == (LedgerKind.POINTS, -5)
    assert "Leistungskatalog" in points.reason
    assert charge_for(POINTS, None, CATALOGUE) is None  # no proposal: nothing to price
    assert charge_for(ON_DEMAND, Priority.KRITISCH, CATALOGUE) is None  # booked by staff


def test_deadlines_follow_the_contract_calendar_and_the_customer_state(tmp_path: Path) -> None:
    deadlines = Deadlines(config(tmp_path))
    # Basic, Kritisch (4 service hours) on Friday 16:00: one hour left, three on Monday from 8.
    assert deadlines.due(
        ContractModel.BASIC, Priority.KRITISCH, FRIDAY_1600_BERLIN, "NW"
    ) == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    # Professional has extended hours (Friday to 20:00): due the same evening.
    assert deadlines.due(
        ContractModel.PROFESSIONAL, Priority.KRITISCH, FRIDAY_1600_BERLIN, "NW"
    ) == datetime(2026, 11, 27, 17, 0, tzinfo=UTC)
    # Corpus Christi (4 June 2026) is a holiday in NW but not in Berlin.
    wednesday = datetime(2026, 6, 3, 14, 0, tzinfo=UTC)  # 16:00 in Berlin
    assert deadlines.due(ContractModel.BASIC, Priority.KRITISCH, wednesday, "NW").day == 5
    assert deadlines.due(ContractModel.BASIC, Priority.KRITISCH, wednesday, "BE").day == 4


def test_a_reply_context_speaks_the_customers_language(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    common = dict(
        ticket_number="2026112710000001",
        subject="Ausfall",
        sender="it@muster.example",
        contact_name="Erika",
        model=ContractModel.BASIC,
        priority=Priority.KRITISCH,
        deadline=datetime(2026, 11, 30, 10, 0, tzinfo=UTC),
        zone=cfg.zone,
    )
    de = reply_context(ReplyKind.CONFIRMATION, language="de", **common)  # type: ignore[arg-type]
    en = reply_context(ReplyKind.CONFIRMATION, language="en", **common)  # type: ignore[arg-type]
    assert (de.priority, de.deadline_text) == ("Kritisch", "Montag, 30.11.2026, 11:00 Uhr")
    assert (en.priority, en.deadline_text) == ("Critical", "Monday, 30 November 2026, 11:00")
    assert de.commitment and de.contract_title == "OTRS-Support Basic"
    bare = reply_context(
        ReplyKind.UNKNOWN_SENDER,
        language="de",
        **{**common, "model": None, "priority": None, "deadline": None},  # type: ignore[arg-type]
    )
    assert (bare.priority, bare.deadline_text, bare.commitment) == ("", "", False)


def test_no_automatic_mail_goes_to_our_own_a_machine_or_an_unusable_address(
    tmp_path: Path,
) -> None:
    """delivery.may_mail is the one rule; send_reply asks it for every mail we write on our own."""
    cfg = config(tmp_path)
    cfg = cfg.model_copy(
        update={"mail": cfg.mail.model_copy(update={"from_address": "Team@Example.com"})}
    )
    refused = [
        "support@example.com",  # smtp.addresses
        "SUPPORT@example.com",
        "team@example.com",  # mail.from_address
        "MAILER-DAEMON@mx.muster.example",
        "noreply@muster.example",
        "no-reply@muster.example",
        "postmaster@muster.example",
        "it\x1b@muster.example",
        "",
    ]
    assert [a for a in refused if may_mail(cfg, a)] == []
    assert may_mail(cfg, "it@muster.example") and may_mail(cfg, "support@punkt-partner.example")
