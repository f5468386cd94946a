"""The Leistungskatalog (a request is priced by the service it calls off) and the OTRS Download
answer, from the configuration through the pipeline to the staff correction."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from classifier.model import PriorityModel
from intake.commands.tickets import cmd_contracts_show, cmd_tickets_show
from intake.config import Config, ConfigError, load_config
from intake.corrections import training_corrections
from intake.db.tables import Correction, LedgerEntry, Staff, Ticket
from intake.domain import ContractModel, ContractView, Outcome, Priority, TicketStatus
from intake.mail.parse import parse_email
from intake.passwords import hash_password
from intake.rules.chain import default_chain
from intake.rules.charges import LedgerKind, answer_charge, charge_for, points_price, reprice
from intake.service import IntakeService, Receipt
from intake.staff import StaffActionRefused, correct_priority, correct_service
from intake.web.app import create_app
from tests.support.config import ROOT, make_config
from tests.support.database import count, last_reply
from tests.support.factories import make_mail
from tests.support.models import ServiceModel
from tests.support.web import PASSWORD, csrf_of, login

BASIC = ContractView(1, ContractModel.BASIC, date(2026, 1, 1), date(2026, 12, 31), quota=30)
POINTS = ContractView(2, ContractModel.POINTS, date(2026, 1, 1), None, points=120)
URL = "https://download.example.com/otrs/"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_default_catalogue_lists_the_offers_services_and_prices_by_service() -> None:
    cfg = load_config(ROOT / "config.yaml", {})
    assert [e.id for e in cfg.catalogue] == [
        "stoerung",
        "konfiguration",
        "update",
        "installation",
        "beratung",
        "anpassung",
        "download",
        "vertrag",
    ]
    installation = cfg.service("installation")
    assert installation is not None and installation.name == "Installation"
    assert cfg.service("gibt-es-nicht") is None and cfg.service(None) is None
    # A service's price; a Störung is priced by its priority; no service: the priority's price.
    assert points_price(Priority.NIEDRIG, cfg.points_catalogue, installation) == 8
    assert points_price(Priority.KRITISCH, cfg.points_catalogue, cfg.service("stoerung")) == 8
    assert points_price(Priority.NIEDRIG, cfg.points_catalogue, cfg.service("stoerung")) == 1
    assert points_price(Priority.HOCH, cfg.points_catalogue) == 5
    charge = charge_for(POINTS, Priority.NIEDRIG, cfg.points_catalogue, installation)
    assert charge is not None and (charge.kind, charge.amount) == (LedgerKind.POINTS, -8)
    assert "Installation" in charge.reason
    # Basic and Professional count requests, whatever the service.
    request = charge_for(BASIC, Priority.NIEDRIG, cfg.points_catalogue, installation)
    assert request is not None and (request.kind, request.amount) == (LedgerKind.REQUEST, -1)


def test_the_download_answer_uses_nothing_unless_configured_to_count() -> None:
    cfg = load_config(ROOT / "config.yaml", {})
    download = cfg.service("download")
    assert answer_charge(BASIC, Priority.NIEDRIG, cfg.points_catalogue, download, False) is None
    counted = answer_charge(BASIC, Priority.NIEDRIG, cfg.points_catalogue, download, True)
    assert counted is not None and counted.amount == -1


def test_repricing_refunds_the_old_reservation_and_books_the_new_one() -> None:
    refund, booking = reprice(2, 5, "Beratung", "Anpassung / Entwicklung", "falsch erkannt")
    assert (refund.kind, refund.amount) == (LedgerKind.POINTS, 2)
    assert (booking.kind, booking.amount) == (LedgerKind.POINTS, -5)
    assert "Beratung" in refund.reason and "Anpassung / Entwicklung" in booking.reason
    assert reprice(0, 0, "Download", "Vertragsfrage", "x") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "catalogue:\n  - {id: a, name: A, points: 1}\n  - {id: a, name: B, points: 2}\n",
            "catalogue: service id listed twice: a",
        ),
        ("catalogue:\n  - {id: a, name: A, points: -1}\n", "catalogue.0.points: Input should be"),
        (
            "catalogue:\n  - {id: Groß, name: A, points: 1}\n",
            "catalogue.0.id: 'Groß' is no service id",
        ),
        (
            "catalogue:\n  - {id: a, name: A, points: 1, points_by_priority: {Dringend: 3}}\n",
            "catalogue.0.points_by_priority.Dringend",
        ),
        (
            "catalogue:\n  - {id: a, name: A, points: 1, preis: 3}\n",
            "catalogue.0.preis: unknown key",
        ),
        (
            "catalogue:\n  - {id: a, name: A, points: 1}\ndownloads:\n  url: https://x.example/\n",
            "downloads.url needs the service 'download' in the catalogue",
        ),
        (
            "downloads:\n  url: ftp://x.example/\n",
            "downloads.url: 'ftp://x.example/' is no http(s)",
        ),
        ("downloads:\n  min_confidence: 2\n", "downloads.min_confidence: Input should be"),
    ],
)
def test_a_wrong_catalogue_or_downloads_key_names_the_key_and_the_reason(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), {})
    assert message in str(err.value)


def test_the_download_address_comes_from_the_environment() -> None:
    cfg = load_config(ROOT / "config.yaml", {"INTAKE_DOWNLOADS__URL": URL})
    assert cfg.downloads.url == URL and cfg.downloads.counts_as_request is False
    assert cfg.downloads.min_confidence == 0.5


# --- through the pipeline -------------------------------------------------------------------

AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # Wednesday 10:00 in Berlin
POINTS_SENDER = "support@punkt-partner.example"  # K-1003, points account with 120 points
BASIC_SENDER = "it@muster.example"  # K-1001, Basic
DOWNLOAD_DE = dict(
    subject="Aktuelle Patches",
    body="Hallo, wo finden wir die aktuellen Patches und die neue Version zum Download? Danke",
)
DOWNLOAD_EN = dict(
    subject="Latest patches",
    body="Hello, where can we download the latest patches and the current version? Thanks",
)
QUESTION = dict(subject="Frage zu Queues", body="Wie lege ich eine neue Queue an? Danke")


@pytest.fixture
def cfg(tmp_path: Path, db_url: str) -> Config:
    """The shipped configuration with the download address from the environment."""
    return make_config(tmp_path, db_url, INTAKE_DOWNLOADS__URL=URL)


def receive(
    cfg: Config,
    sessions: sessionmaker[Session],
    model: PriorityModel,
    service: str | None,
    sender: str,
    confidence: float = 0.9,
    **mail: str,
) -> Receipt:
    intake = IntakeService(cfg, sessions, ServiceModel(model, service, confidence))
    return intake.receive(parse_email(make_mail(sender=sender, **(mail or QUESTION)), AT))


def points_entries(sessions: sessionmaker[Session]) -> list[tuple[float, str | None]]:
    with sessions() as session:
        rows = session.scalars(
            select(LedgerEntry).where(LedgerEntry.kind == "points").order_by(LedgerEntry.id)
        )
        return [(e.amount, e.staff) for e in rows]


def contracts_show(cfg: Config, customer: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert cmd_contracts_show(cfg, argparse.Namespace(customer=customer)) == 0
    return capsys.readouterr().out


def show_json(cfg: Config, number: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert cmd_tickets_show(cfg, argparse.Namespace(number=number, json=True)) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def test_a_points_request_proposed_as_installation_is_charged_the_installation_price(
    cfg: Config,
    sessions: sessionmaker[Session],
    model: PriorityModel,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receipt = receive(cfg, sessions, model, "installation", POINTS_SENDER, confidence=0.8)
    assert receipt.outcome is Outcome.ACCEPTED
    assert points_entries(sessions) == [(-8, None)]
    reply = last_reply(sessions)
    assert "Leistung:         Installation (8 Punkte)" in reply
    assert "8 Punkte reserviert; Ihr Guthaben danach: 112 Punkte" in reply
    assert "Guthaben 112 Punkte" in contracts_show(cfg, "K-1003", capsys)
    shown = show_json(cfg, receipt.ticket_number or "", capsys)
    assert shown["service"] == {
        "proposed": "installation",
        "confidence": 0.8,
        "final": None,
        "name": "Installation",
    }


def test_without_a_proposed_service_the_priority_price_applies_as_before(
    cfg: Config,
    sessions: sessionmaker[Session],
    model: PriorityModel,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A model without the second head (as before #15): Prediction.service is None.
    intake = IntakeService(cfg, sessions, ServiceModel(model, None))
    receipt = intake.receive(parse_email(make_mail(sender=POINTS_SENDER, **QUESTION), AT))
    assert receipt.priority is Priority.NIEDRIG and receipt.outcome is Outcome.ACCEPTED
    assert points_entries(sessions) == [(-1, None)]
    reply = last_reply(sessions)
    assert "Leistung:" not in reply and "1 Punkte reserviert" in reply
    assert "Guthaben 119 Punkte" in contracts_show(cfg, "K-1003", capsys)
    shown = show_json(cfg, receipt.ticket_number or "", capsys)
    assert shown["service"] == {"proposed": None, "confidence": None, "final": None, "name": None}


def test_a_service_the_catalogue_does_not_list_is_priced_by_priority(
    cfg: Config, sessions: sessionmaker[Session], model: PriorityModel
) -> None:
    receive(cfg, sessions, model, "zauberei", POINTS_SENDER)
    assert points_entries(sessions) == [(-1, None)]


def test_staff_correct_the_service_and_the_ledger_shows_the_refund_and_the_new_booking(
    cfg: Config,
    sessions: sessionmaker[Session],
    model: PriorityModel,
    capsys: pytest.CaptureFixture[str],
) -> None:
    number = receive(cfg, sessions, model, "beratung", POINTS_SENDER).ticket_number or ""
    assert points_entries(sessions) == [(-2, None)]
    with sessions.begin() as session:
        result = correct_service(
            session, cfg, number, "anpassung", "anna", "Entwicklung gewünscht", AT
        )
    assert (result.old, result.new, result.points_delta) == ("beratung", "anpassung", -3)
    assert points_entries(sessions) == [(-2, None), (2, "anna"), (-5, "anna")]
    assert "Guthaben 115 Punkte" in contracts_show(cfg, "K-1003", capsys)
    with sessions() as session:
        correction = session.scalars(select(Correction)).one()
        assert (correction.old_service, correction.new_service) == ("beratung", "anpassung")
        assert correction.new_priority is None and correction.staff == "anna"
        assert correction.reason == "Entwicklung gewünscht" and correction.created_at == AT
        (example,) = training_corrections(session)
        assert example.service == "anpassung" and example.priority is Priority.NIEDRIG
    shown = show_json(cfg, number, capsys)
    assert shown["service"]["proposed"] == "beratung"
    assert shown["service"]["final"] == "anpassung"
    # A later priority correction prices by the decided service (Anpassung: 5 at any priority).
    with sessions.begin() as session:
        moved = correct_priority(session, cfg, number, Priority.HOCH, "anna", "dringend", AT)
    assert moved.points_delta == 0
    with sessions() as session:
        (example,) = training_corrections(session)
        assert (example.priority, example.service) == (Priority.HOCH, "anpassung")
    with pytest.raises(StaffActionRefused, match="no service 'zauberei'"), sessions.begin() as s:
        correct_service(s, cfg, number, "zauberei", "anna", "x", AT)


def test_a_basic_customers_download_request_gets_the_link_and_uses_no_request(
    cfg: Config,
    sessions: sessionmaker[Session],
    model: PriorityModel,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receipt = receive(cfg, sessions, model, "download", BASIC_SENDER, **DOWNLOAD_DE)
    assert receipt.outcome is Outcome.ANSWERED and receipt.priority is Priority.NIEDRIG
    reply = last_reply(sessions)
    assert URL in reply and "Download" in reply
    assert "zählt nicht als Service-Anfrage" in reply
    assert count(sessions, "ledger") == 0
    assert "0 von 30 Anfragen" in contracts_show(cfg, "K-1001", capsys)
    with sessions() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.status == TicketStatus.DONE and ticket.outcome == "answered"
        assert ticket.deadline is None and ticket.proposed_priority == "Niedrig"
        assert ticket.proposed_service == "download"
    # Writing back to the answer reopens the ticket: it was only closed as answered.
    again = IntakeService(cfg, sessions, model).receive(
        parse_email(
            make_mail(
                sender=BASIC_SENDER,
                subject=f"Re: [Ticket#{receipt.ticket_number}] Aktuelle Patches",
                body="Der Link geht nicht, die Installation bricht ab. Bitte helfen Sie.",
            ),
            AT,
        )
    )
    assert again.outcome is Outcome.FOLLOW_UP and again.ticket_number == receipt.ticket_number
    with sessions() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.status == TicketStatus.NEW and ticket.unread_since is not None
        assert [e.kind for e in ticket.events] == ["message", "reopened"]


def test_a_download_answer_counts_as_a_request_when_so_configured(
    cfg: Config, sessions: sessionmaker[Session], model: PriorityModel
) -> None:
    counting = cfg.model_copy(
        update={"downloads": cfg.downloads.model_copy(update={"counts_as_request": True})}
    )
    receipt = receive(counting, sessions, model, "download", BASIC_SENDER, **DOWNLOAD_DE)
    assert receipt.outcome is Outcome.ANSWERED
    assert count(sessions, "ledger", "kind = 'request'") == 1
    reply = last_reply(sessions)
    assert URL in reply and "Dies ist Ihre 1. von 30 Service-Anfragen" in reply


def test_an_unknown_sender_asking_for_downloads_gets_the_unknown_sender_reply_and_no_link(
    cfg: Config, sessions: sessionmaker[Session], model: PriorityModel
) -> None:
    receipt = receive(cfg, sessions, model, "download", "stranger@elsewhere.example", **DOWNLOAD_DE)
    assert receipt.outcome is Outcome.HELD
    reply = last_reply(sessions)
    assert "Kundennummer" in reply and URL not in reply


def test_an_unsure_download_proposal_is_an_ordinary_request(
    cfg: Config, sessions: sessionmaker[Session], model: PriorityModel
) -> None:
    receipt = receive(cfg, sessions, model, "download", BASIC_SENDER, 0.3, **DOWNLOAD_DE)
    assert receipt.outcome is Outcome.ACCEPTED
    assert URL not in last_reply(sessions)
    assert count(sessions, "ledger", "kind = 'request'") == 1


def test_an_english_download_request_gets_the_english_answer_with_the_configured_text(
    cfg: Config, sessions: sessionmaker[Session], model: PriorityModel
) -> None:
    worded = cfg.model_copy(
        update={
            "downloads": cfg.downloads.model_copy(
                update={"text_en": "Log in with your customer number.", "text_de": "Deutsch."}
            )
        }
    )
    receipt = receive(worded, sessions, model, "download", "ops@beispiel.example", **DOWNLOAD_EN)
    assert receipt.outcome is Outcome.ANSWERED
    reply = last_reply(sessions)
    assert URL in reply and "Log in with your customer number." in reply
    assert "does not count as a service request" in reply and "Deutsch." not in reply


def test_the_download_answer_comes_after_every_sender_rule() -> None:
    """Automatic, unverified and unknown senders are decided before the download answer."""
    names = [rule.name for rule in default_chain()]
    answer = names.index("download-answer")
    for earlier in ("automatic-message", "sender-not-verified", "unknown-sender", "no-contract"):
        assert names.index(earlier) < answer
    for later in ("quota-exhausted", "insufficient-points"):
        assert names.index(later) > answer


def test_the_staff_page_shows_the_service_and_staff_correct_it_beside_the_priority(
    cfg: Config, sessions: sessionmaker[Session], model: PriorityModel
) -> None:
    number = receive(cfg, sessions, model, "beratung", POINTS_SENDER, 0.7).ticket_number or ""
    with sessions.begin() as session:
        session.add(Staff(name="anna", password_hash=hash_password(PASSWORD), created_at=AT))
    client = TestClient(create_app(cfg, sessions, lambda: AT), follow_redirects=False)
    assert login(client) == 303
    page = client.get(f"/tickets/{number}").text
    assert 'id="service"' in page and "Beratung" in page and "Konfidenz 70 %" in page
    assert f'action="/tickets/{number}/service"' in page
    forged = client.post(
        f"/tickets/{number}/service", data={"service": "anpassung", "reason": "x", "csrf": "no"}
    )
    assert forged.status_code == 403 and count(sessions, "corrections") == 0
    unknown = client.post(
        f"/tickets/{number}/service",
        data={"service": "zauberei", "reason": "x", "csrf": csrf_of(page)},
    )
    assert unknown.status_code == 400
    done = client.post(
        f"/tickets/{number}/service",
        data={
            "service": "anpassung",
            "reason": "Falsche Leistung erkannt",
            "note": "Entwicklung",
            "csrf": csrf_of(page),
        },
    )
    assert done.status_code == 303
    after = client.get(done.headers["location"]).text
    assert "Leistung „Anpassung / Entwicklung“ gespeichert; Reservierung angepasst." in after
    assert "anna: <strong>Leistung</strong> Beratung → Anpassung / Entwicklung" in after
    assert "+2 – Gutschrift" in after and "-5 – Reservierung" in after
    assert points_entries(sessions) == [(-2, None), (2, "anna"), (-5, "anna")]


def test_the_shipped_model_proposes_the_service_and_the_points_follow_it(
    cfg: Config,
    sessions: sessionmaker[Session],
    model: PriorityModel,
    capsys: pytest.CaptureFixture[str],
) -> None:
    intake = IntakeService(cfg, sessions, model)
    receipt = intake.receive(parse_email(make_mail(sender=POINTS_SENDER, **QUESTION), AT))
    assert receipt.priority is Priority.NIEDRIG and receipt.outcome is Outcome.ACCEPTED
    assert points_entries(sessions) == [(-2, None)]  # a Beratung costs 2 points
    assert "Beratung" in last_reply(sessions)
    assert "Guthaben 118 Punkte" in contracts_show(cfg, "K-1003", capsys)
