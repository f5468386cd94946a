"""A new staff member in a real browser (Debian's Chromium via Playwright): log in, find the most
urgent ticket, correct a priority, see the new deadline. Screenshots go to test-output/."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from classifier.model import PriorityModel
from intake.calendar import build_calendar, format_deadline
from intake.clock import utcnow
from intake.config import Config
from intake.db.tables import Staff, Ticket
from intake.domain import Priority
from intake.mail.parse import parse_email
from intake.passwords import hash_password
from tests.support.config import ROOT, missing_service
from tests.support.factories import make_mail
from tests.support.servers import AppThread

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
OUTPUT = ROOT / "test-output"


def test_a_staff_member_corrects_a_priority_and_sees_the_new_deadline(
    cfg: Config, sessions: sessionmaker[Session], model: PriorityModel, db_url: str
) -> None:
    if not Path(CHROMIUM).exists():
        missing_service(
            "chromium is not installed (`make test` installs it: scripts/test-services.sh)"
        )
    from playwright.sync_api import expect, sync_playwright

    with sessions.begin() as session:
        session.add(
            Staff(
                name="anna", password_hash=hash_password("ein-gutes-passwort"), created_at=utcnow()
            )
        )
    with AppThread(cfg, model) as app:
        now = utcnow()
        for subject, body in [
            ("Frage zur Queue", "Wie lege ich eine neue Queue für den Einkauf an?"),
            (
                "Produktion steht",
                "Unser Produktivsystem ist komplett ausgefallen, auch nach dem Neustart. Kein Workaround.",
            ),
        ]:
            app.app.service.receive(parse_email(make_mail(subject=subject, body=body), now))
        with sessions() as session:
            question = session.scalars(
                select(Ticket).where(Ticket.subject == "Frage zur Queue")
            ).one()
        calendar = build_calendar(cfg, "service", "NW")
        expected = format_deadline(calendar.add_business_hours(question.received_at, 4), cfg.zone)
        base = f"http://127.0.0.1:{app.app.web_port}"
        OUTPUT.mkdir(exist_ok=True)
        suffix = "pg" if db_url.startswith("postgresql") else "sqlite"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_page(locale="de-DE", viewport={"width": 1280, "height": 800})
            page.goto(base + "/")
            expect(page.get_by_role("heading", name="Anmelden")).to_be_visible()
            page.get_by_label("Name").fill("anna")
            page.get_by_label("Passwort").fill("ein-gutes-passwort")
            page.get_by_role("button", name="Anmelden").click()
            expect(page.get_by_role("heading", name="Prüfliste")).to_be_visible()
            first_row = page.locator("tbody tr").first
            expect(first_row).to_contain_text("Kritisch")  # the most urgent ticket is on top
            page.screenshot(path=str(OUTPUT / f"queue-{suffix}.png"), full_page=True)
            page.get_by_role("link", name=question.number or "").click()
            expect(page.locator("#priority")).to_have_text(Priority.NIEDRIG.value)
            page.get_by_label("Priorität", exact=True).select_option("Kritisch")
            page.get_by_label("Grund").select_option("Kein Workaround")
            page.get_by_role("button", name="Priorität speichern").click()
            expect(page.get_by_role("status")).to_contain_text("Frist neu berechnet")
            expect(page.locator("#priority")).to_have_text("Kritisch")
            expect(page.locator("#deadline")).to_have_text(expected)
            page.screenshot(path=str(OUTPUT / f"ticket-corrected-{suffix}.png"), full_page=True)
            browser.close()
    assert (OUTPUT / f"ticket-corrected-{suffix}.png").stat().st_size > 10_000
