"""The staff pages as a staff member meets them: login, queue, detail, correction, quality."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from classifier.model import PriorityModel
from intake.config import Config
from intake.db.tables import Staff
from intake.mail.parse import parse_email
from intake.service import IntakeService
from intake.web.app import create_app
from intake.web.auth import hash_password
from tests.conftest import count
from tests.factories import make_mail

RECEIVED = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # Wednesday 10:00 Berlin
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
PASSWORD = "richtig-langes-passwort"


@pytest.fixture
def client(cfg: Config, sessions: sessionmaker[Session], model: PriorityModel) -> TestClient:
    with sessions.begin() as session:
        session.add(Staff(name="anna", password_hash=hash_password(PASSWORD), created_at=NOW))
    service = IntakeService(cfg, sessions, model)
    for sender, subject, body in [
        ("it@muster.example", "Frage", "Wie lege ich eine neue Queue an?"),
        (
            "it@muster.example",
            "Produktion steht",
            "Unser Produktivsystem ist komplett ausgefallen, auch nach dem Neustart. Niemand kann arbeiten, kein Workaround.",
        ),
        (
            "evil@elsewhere.example",
            "<script>alert('x')</script>",
            "<img src=x onerror=alert(1)> <script>document.cookie</script>",
        ),
    ]:
        service.receive(parse_email(make_mail(sender=sender, subject=subject, body=body), RECEIVED))
    return TestClient(create_app(cfg, sessions, lambda: NOW), follow_redirects=False)


def login(client: TestClient, password: str = PASSWORD) -> int:
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    return client.post(
        "/login", data={"name": "anna", "password": password, "csrf": token.group(1), "next": "/"}
    ).status_code


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


@pytest.mark.parametrize("path", ["/", "/tickets/2026112510000001", "/quality"])
def test_no_page_without_login(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


def test_a_correction_without_login_is_refused(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    response = client.post(
        "/tickets/2026112510000001/priority", data={"priority": "Hoch", "reason": "x"}
    )
    assert response.status_code == 303
    assert count(sessions, "corrections") == 0


def test_wrong_passwords_are_refused_and_then_rate_limited(client: TestClient) -> None:
    assert [login(client, "falsch") for _ in range(5)] == [401] * 5
    assert login(client) == 429  # even the right password, until the window has passed


def test_the_session_cookie_is_httponly_and_samesite_and_renewed_at_login(
    client: TestClient,
) -> None:
    page = client.get("/login")
    before = client.cookies.get("intake_session")
    response = client.post(
        "/login",
        data={"name": "anna", "password": PASSWORD, "csrf": csrf_of(page.text), "next": "/"},
    )
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.cookies.get("intake_session") != before  # no session fixation


def test_the_queue_puts_tickets_for_review_and_the_critical_one_first(client: TestClient) -> None:
    assert login(client) == 303
    page = client.get("/")
    assert page.status_code == 200 and "Prüfliste" in page.text
    numbers = re.findall(r'href="/tickets/(\d{16})"', page.text)
    assert len(numbers) == 3
    critical = client.get(f"/tickets/{numbers[1]}").text + client.get(f"/tickets/{numbers[0]}").text
    assert "Kritisch" in critical
    filtered = client.get("/", params={"priority": "Niedrig"})
    assert len(re.findall(r'href="/tickets/(\d{16})"', filtered.text)) == 1


def test_hostile_ticket_contents_render_harmless(client: TestClient) -> None:
    assert login(client) == 303
    queue = client.get("/").text
    assert "<script>alert" not in queue and "&lt;script&gt;alert" in queue
    held = client.get("/", params={"status": "held"}).text
    number = re.findall(r'href="/tickets/(\d{16})"', held)[0]
    detail = client.get(f"/tickets/{number}")
    assert "<script>document.cookie" not in detail.text and "<img src=x" not in detail.text
    assert "&lt;script&gt;document.cookie&lt;/script&gt;" in detail.text
    assert "default-src 'none'" in detail.headers["content-security-policy"]


def test_a_correction_needs_the_form_token_recomputes_the_deadline_and_counts_in_quality(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    assert login(client) == 303
    queue = client.get("/").text
    question = next(
        n
        for n in re.findall(r'href="/tickets/(\d{16})"', queue)
        if "Wie lege ich" in client.get(f"/tickets/{n}").text
    )
    page = client.get(f"/tickets/{question}")
    assert "Niedrig" in page.text
    forged = client.post(
        f"/tickets/{question}/priority",
        data={"priority": "Kritisch", "reason": "x", "csrf": "forged"},
    )
    assert forged.status_code == 403 and count(sessions, "corrections") == 0
    done = client.post(
        f"/tickets/{question}/priority",
        data={
            "priority": "Kritisch",
            "reason": "Kein Workaround",
            "note": "Produktion betroffen",
            "csrf": csrf_of(page.text),
        },
    )
    assert done.status_code == 303
    after = client.get(done.headers["location"]).text
    # Basic, Kritisch: Wednesday 10:00 + 4 service hours = 14:00
    assert "Mittwoch, 25.11.2026, 14:00 Uhr" in after
    assert "anna: Niedrig → Kritisch (Kein Workaround: Produktion betroffen" in after
    quality = client.get("/quality").text
    assert (
        "Übereinstimmung <strong>0 %</strong>" in quality
        and "Recall Kritisch <strong>0 %</strong>" in quality
    )


def test_logout_ends_the_session(client: TestClient) -> None:
    assert login(client) == 303
    page = client.get("/")
    client.post("/logout", data={"csrf": csrf_of(page.text)})
    assert client.get("/").status_code == 303
