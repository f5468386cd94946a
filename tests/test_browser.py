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
from tests.support.servers import AppThread, wait_for_files, wait_until

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


AXE = ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(page: object) -> list[str]:
    """WCAG 2 A/AA violations axe-core finds on the page (contrast, labels, names …)."""
    page.add_script_tag(path=str(AXE))  # type: ignore[attr-defined]
    found = page.evaluate(  # type: ignore[attr-defined]
        """async () => (await axe.run(document, {runOnly: {type: 'tag',
            values: ['wcag2a', 'wcag2aa']}})).violations.map(
            v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"""
    )
    return list(found)


def test_a_follow_up_on_a_phone_flags_escalates_and_is_marked_erledigt_by_keyboard(
    cfg: Config, sessions: sessionmaker[Session], model: PriorityModel, db_url: str
) -> None:
    """At 390 px: the queue fits the screen (rows are cards), the customer's escalation is on
    top as "Neue Nachricht" and Kritisch, the search finds it, the ticket is marked erledigt
    with the keyboard alone, and axe-core finds no WCAG A/AA violation on either page."""
    if not Path(CHROMIUM).exists() or not AXE.exists():
        missing_service("chromium or axe-core missing (`make test` installs both)")
    from playwright.sync_api import expect, sync_playwright

    with sessions.begin() as session:
        session.add(
            Staff(
                name="anna", password_hash=hash_password("ein-gutes-passwort"), created_at=utcnow()
            )
        )
    with AppThread(cfg, model) as app:
        now = utcnow()
        service = app.app.service
        first = service.receive(
            parse_email(
                make_mail(subject="Frage zu Queues", body="Wie lege ich eine Queue an?"), now
            )
        )
        service.receive(
            parse_email(
                make_mail(subject="Export", body="Wie exportiere ich Statistiken als CSV?"), now
            )
        )
        service.receive(
            parse_email(
                make_mail(
                    subject=f"Re: [Ticket#{first.ticket_number}] Frage zu Queues",
                    body="Jetzt ist es wirklich kritisch: das Produktivsystem steht komplett, "
                    "niemand kann mehr arbeiten, kein Workaround.",
                ),
                now,
            )
        )
        held = service.receive(
            parse_email(
                make_mail(sender="fremd@elsewhere.example", subject="Hilfe", body="Znuny hängt."),
                now,
            )
        )
        base = f"http://127.0.0.1:{app.app.web_port}"
        OUTPUT.mkdir(exist_ok=True)
        suffix = "pg" if db_url.startswith("postgresql") else "sqlite"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            context = browser.new_context(
                locale="de-DE", viewport={"width": 390, "height": 844}, bypass_csp=True
            )
            page = context.new_page()
            page.goto(base + "/")
            page.get_by_label("Name").fill("anna")
            page.get_by_label("Passwort").fill("ein-gutes-passwort")
            page.get_by_role("button", name="Anmelden").click()
            expect(page.get_by_role("heading", name="Prüfliste")).to_be_visible()
            first_card = page.locator("table.queue tbody tr").first
            expect(first_card).to_contain_text("Neue Nachricht")
            expect(first_card).to_contain_text("Kritisch")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the queue is {width} px wide on a 390 px screen"
            page.screenshot(path=str(OUTPUT / f"queue-phone-{suffix}.png"), full_page=True)
            assert axe_violations(page) == []
            page.get_by_label("Suche").fill("statistiken")
            page.get_by_role("button", name="Suchen").click()
            expect(page.locator("table.queue tbody tr")).to_have_count(1)
            expect(page.locator("table.queue tbody tr").first).to_contain_text("Export")
            page.goto(base + f"/tickets/{first.ticket_number}")
            expect(page.locator("#priority")).to_have_text("Kritisch")
            expect(page.locator("#events")).to_contain_text("Priorität angehoben")
            assert axe_violations(page) == []
            # Keyboard only: Tab to "Erledigt", Enter.
            for _ in range(40):
                page.keyboard.press("Tab")
                if page.evaluate("document.activeElement.textContent.trim()") == "Erledigt":
                    break
            else:
                raise AssertionError("'Erledigt' is not reachable by keyboard")
            page.keyboard.press("Enter")
            expect(page.locator("#status")).to_have_text("erledigt")
            page.screenshot(path=str(OUTPUT / f"ticket-phone-{suffix}.png"), full_page=True)
            page.goto(base + "/")
            expect(page.locator("table.queue")).not_to_contain_text(first.ticket_number or "-")
            # A held request from an unknown address, accepted as goodwill: the confirmation
            # with its number and deadline reaches the relay (the Maildir sink).
            page.get_by_label("Status").select_option("held")
            page.get_by_role("button", name="Suchen").click()
            page.get_by_role("link", name=held.ticket_number or "-").click()
            page.get_by_label("Frist nach").select_option("basic")
            page.get_by_role("button", name="Annehmen und Kunden bestätigen").click()
            expect(page.get_by_role("status")).to_contain_text("Bestätigung an den Kunden")
            expect(page.locator("#status")).to_have_text("neu")
            browser.close()
        inbox = cfg.relay.maildir / "new"

        def confirmations() -> list[str]:
            mails = [f.read_text(errors="replace") for f in wait_for_files(inbox, 0, 0)]
            return [m for m in mails if f"Ticket#{held.ticket_number}" in m]

        wait_until(lambda: bool(confirmations()), timeout=10)
        confirmation = confirmations()[-1]
        assert "fremd@elsewhere.example" in confirmation and "Antwort bis" in confirmation
