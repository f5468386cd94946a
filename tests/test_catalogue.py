"""The Leistungskatalog (a request is priced by the service it calls off) and the OTRS Download
answer, from the configuration through the pipeline to the staff correction."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from intake.config import ConfigError, load_config
from intake.domain import ContractModel, ContractView, Priority
from intake.rules.charges import LedgerKind, answer_charge, charge_for, points_price, reprice
from tests.support.config import ROOT

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
