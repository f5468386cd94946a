"""Opt-in: the same checks against a real Znuny (ZNUNY_URL, ZNUNY_USER, ZNUNY_PASSWORD; the web
service from docs/znuny/IntakeConnector.yml imported, the dynamic fields created):
`ZNUNY_URL=… ZNUNY_USER=… ZNUNY_PASSWORD=… make test`. It creates one ticket titled "intake live
test" and adds a note to it."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from intake.config import load_config
from intake.znuny.check import check
from intake.znuny.client import ZnunyClient

# Collected only when the three variables are set (tests/conftest.py).


def live_client() -> tuple[ZnunyClient, object]:
    cfg = load_config(
        None,
        {
            "INTAKE_ZNUNY__ENABLED": "true",
            "INTAKE_ZNUNY__URL": os.environ["ZNUNY_URL"],
            "INTAKE_ZNUNY__USER": os.environ["ZNUNY_USER"],
            "INTAKE_ZNUNY__PASSWORD": os.environ["ZNUNY_PASSWORD"],
            **{k: v for k, v in os.environ.items() if k.startswith("INTAKE_ZNUNY__")},
        },
    )
    return ZnunyClient(cfg.znuny), cfg


def test_check_passes_against_the_real_znuny() -> None:
    client, cfg = live_client()
    try:
        findings = check(cfg, client)  # type: ignore[arg-type]
    finally:
        client.close()
    assert [f.line() for f in findings if not f.ok] == []


def test_create_find_by_reference_and_update_round_trip() -> None:
    client, cfg = live_client()
    reference = f"live-{datetime.now(UTC):%Y%m%d%H%M%S}"
    znuny = cfg.znuny  # type: ignore[attr-defined]
    try:
        created = client.create_ticket(
            {
                "Title": "intake live test",
                "Queue": znuny.ticket.queue,
                "State": znuny.ticket.state,
                "Priority": znuny.priorities["Niedrig"],
                "CustomerUser": "intake-live-test@example.com",
            },
            {
                "CommunicationChannel": "Email",
                "SenderType": "customer",
                "IsVisibleForCustomer": 1,
                "From": "intake-live-test@example.com",
                "Subject": "intake live test",
                "Body": "Created by tests/test_znuny_live.py.",
                "ContentType": "text/plain; charset=utf8",
            },
            [{"Name": znuny.dynamic_fields.reference, "Value": reference}],
            [],
        )
        assert client.find_by_reference(reference) == (created.ticket_id, created.ticket_number)
        client.update_ticket(
            created.ticket_id,
            article={
                "CommunicationChannel": "Internal",
                "SenderType": "agent",
                "IsVisibleForCustomer": 0,
                "Subject": "intake live test",
                "Body": "note",
                "ContentType": "text/plain; charset=utf8",
            },
        )
        assert any(h.get("HistoryType") for h in client.history(created.ticket_id))
    finally:
        client.close()
