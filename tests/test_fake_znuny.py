"""The fake Znuny (tests/support/znuny.py) answers in Znuny's shapes, driven by plain httpx."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import yaml

from tests.support import znuny_shapes as S
from tests.support.config import ROOT
from tests.support.znuny import FakeZnuny

NOW = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)


@pytest.fixture
def znuny() -> Iterator[FakeZnuny]:
    with FakeZnuny(now=lambda: NOW) as server:
        yield server


@pytest.fixture
def http(znuny: FakeZnuny) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=znuny.base_url, timeout=5) as client:
        yield client


def login(http: httpx.Client) -> str:
    response = http.post("/Session", json={"UserLogin": "intake", "Password": "intake-secret"})
    assert response.status_code == 200
    return str(response.json()["SessionID"])


def create_body(session: str, **extra: Any) -> dict[str, Any]:
    return {
        "SessionID": session,
        "Ticket": {
            "Title": "Drucker druckt nicht",
            "Queue": "Support",
            "State": "new",
            "Priority": "3 normal",
            "CustomerUser": "kunde@muster.example",
        },
        "Article": {
            "CommunicationChannel": "Email",
            "SenderType": "customer",
            "IsVisibleForCustomer": 1,
            "From": "Kunde <kunde@muster.example>",
            "Subject": "Drucker",
            "Body": "Der Drucker im 2. OG druckt nicht.",
            "ContentType": "text/plain; charset=utf-8",
        },
        **extra,
    }


def test_login_and_auth_fail(http: httpx.Client) -> None:
    assert len(login(http)) == 32
    wrong = http.post("/Session", json={"UserLogin": "intake", "Password": "nope"})
    assert wrong.status_code == 200
    assert wrong.json() == {
        "Error": {
            "ErrorCode": "SessionCreate.AuthFail",
            "ErrorMessage": S.AUTH_FAIL["SessionCreate"],
        }
    }
    unknown_route = http.get("/Nope")
    assert unknown_route.status_code == 500
    assert (
        unknown_route.text == "HTTP::REST Error while determine Operation for request URI '/Nope'."
    )


def test_create_get_round_trip(znuny: FakeZnuny, http: httpx.Client) -> None:
    session = login(http)
    pdf = b"%PDF-1.4 fake"
    body = create_body(
        session,
        DynamicField=[
            {"Name": "IntakeReference", "Value": "REF-1"},
            {"Name": "IntakeDeadline", "Value": "2026-12-04 09:30:00"},
        ],
        Attachment=[
            {
                "Content": base64.b64encode(pdf).decode(),
                "ContentType": "application/pdf",
                "Filename": "rechnung.pdf",
            }
        ],
    )
    created = http.post("/Ticket", json=body).json()
    assert created == {"TicketID": "1", "TicketNumber": "2026120310000001", "ArticleID": "1"}

    params: dict[str, str | int] = {
        "SessionID": session,
        "AllArticles": 1,
        "DynamicFields": 1,
        "Attachments": 1,
    }
    [ticket] = http.get("/Ticket/1", params=params).json()["Ticket"]
    assert (ticket["Title"], ticket["Queue"], ticket["State"], ticket["StateType"]) == (
        "Drucker druckt nicht",
        "Support",
        "new",
        "new",
    )
    assert (ticket["Priority"], ticket["PriorityID"], ticket["CustomerUserID"]) == (
        "3 normal",
        "3",
        "kunde@muster.example",
    )
    fields = {f["Name"]: f["Value"] for f in ticket["DynamicField"]}
    assert fields == {
        "IntakeConfidence": None,
        "IntakeContract": None,
        "IntakeDeadline": "2026-12-04 09:30:00",
        "IntakeReference": "REF-1",
    }
    [article] = ticket["Article"]
    assert (article["SenderType"], article["IsVisibleForCustomer"], article["Charset"]) == (
        "customer",
        "1",
        "utf-8",
    )
    [attachment] = article["Attachment"]
    assert base64.b64decode(attachment["Content"]) == pdf
    assert attachment["Filename"] == "rechnung.pdf"
    stored = znuny.find_by_reference("REF-1")
    assert stored is not None and stored["Articles"][0]["Attachments"][0]["Content"] == pdf
    assert znuny.requests[1].body["Ticket"]["Title"] == "Drucker druckt nicht"


def test_missing_title_and_empty_dynamic_field_list(znuny: FakeZnuny, http: httpx.Client) -> None:
    session = login(http)
    body = create_body(session)
    del body["Ticket"]["Title"]
    response = http.post("/Ticket", json=body)
    assert response.status_code == 200
    assert response.json() == S.error(
        "TicketCreate.MissingParameter", "TicketCreate: Ticket->Title parameter is missing!"
    )
    empty = http.post("/Ticket", json=create_body(session, DynamicField=[])).json()
    assert empty["Error"]["ErrorCode"] == "TicketCreate.MissingParameter"
    assert empty["Error"]["ErrorMessage"] == (
        "TicketCreate: DynamicField parameter is missing or not valid!"
    )
    unknown = create_body(session, DynamicField=[{"Name": "Nope", "Value": "x"}])
    assert http.post("/Ticket", json=unknown).json() == S.invalid(
        "TicketCreate", "DynamicField->Name parameter is invalid!"
    )
    assert znuny.tickets() == []


def test_search_by_reference_and_dates(znuny: FakeZnuny, http: httpx.Client) -> None:
    znuny.add_ticket("alt", created="2026-11-01 08:00:00", dynamic_fields={"IntakeReference": "A"})
    znuny.add_ticket("neu", created="2026-12-01 08:00:00", dynamic_fields={"IntakeReference": "B"})
    session = login(http)

    def search(**criteria: Any) -> Any:
        return http.post("/TicketSearch", json={"SessionID": session, **criteria}).json()

    assert search(DynamicField_IntakeReference={"Equals": "B"}) == {"TicketID": ["2"]}
    assert search(DynamicField_IntakeReference={"Equals": "C"}) == {}
    assert search(TicketCreateTimeOlderDate="2026-11-30 00:00:00") == {"TicketID": ["1"]}
    assert search(TicketCreateTimeNewerDate="2026-11-01 08:00:00") == {"TicketID": ["2", "1"]}
    assert search(StateType="Closed") == {}
    assert search(Limit=1, OrderBy="Up") == {"TicketID": ["1"]}


def test_expired_session(znuny: FakeZnuny, http: httpx.Client) -> None:
    session = login(http)
    znuny.expire_sessions()
    response = http.get("/Ticket/1", params={"SessionID": session})
    assert response.status_code == 200
    assert response.json() == S.error("TicketGet.AuthFail", "TicketGet: Authorization failing!")
    create = http.post("/Ticket", json=create_body(session)).json()
    assert create == S.error(
        "TicketCreate.AuthFail", "TicketCreate: User could not be authenticated!"
    )


def test_history_after_priority_changes(znuny: FakeZnuny, http: httpx.Client) -> None:
    seeded = znuny.add_ticket(
        "Server down", priority="2 low", priority_changes=[("5 very high", "agent1")]
    )
    session = login(http)
    update = {"SessionID": session, "Ticket": {"Priority": "4 high", "State": "open"}}
    assert http.patch(f"/Ticket/{seeded['TicketID']}", json=update).json() == {
        "TicketID": "1",
        "TicketNumber": seeded["TicketNumber"],
    }
    [entry] = http.get("/TicketHistory/1", params={"SessionID": session}).json()["TicketHistory"]
    assert entry["TicketID"] == "1"
    rows = [(r["HistoryType"], r["Name"], r["PriorityID"], r["CreateBy"]) for r in entry["History"]]
    agent1, intake = str(znuny.add_user("agent1")), str(znuny.add_user("intake"))
    assert rows[0] == ("NewTicket", "%%2026120310000001%%Support%%2 low%%open%%1", "2", "1")
    assert ("PriorityUpdate", "%%2 low%%2%%5 very high%%5", "5", agent1) in rows
    assert ("PriorityUpdate", "%%5 very high%%5%%4 high%%4", "4", intake) in rows
    assert set(entry["History"][0]) == set(S.HISTORY_KEYS)


def test_dropped_response_still_creates(znuny: FakeZnuny, http: httpx.Client) -> None:
    session = login(http)
    znuny.drop_next_response("TicketCreate")
    with pytest.raises(httpx.TransportError):
        http.post("/Ticket", json=create_body(session))
    assert [t["Title"] for t in znuny.tickets()] == ["Drucker druckt nicht"]

    znuny.fail_next(operation="TicketCreate")
    crashed = http.post("/Ticket", json=create_body(session))
    assert (crashed.status_code, crashed.json()["faultcode"]) == (500, "Server")
    znuny.disable("TicketCreate")
    gone = http.post("/Ticket", json=create_body(session))
    assert (gone.status_code, gone.text) == (500, S.no_route("/Ticket"))
    assert len(znuny.tickets()) == 1


def test_shipped_web_service_has_the_fakes_routes() -> None:
    config = yaml.safe_load((ROOT / "docs" / "znuny" / "IntakeConnector.yml").read_text())
    provider = config["Provider"]
    mapping = provider["Transport"]["Config"]["RouteOperationMapping"]
    assert {op: (m["RequestMethod"][0], m["Route"]) for op, m in mapping.items()} == S.ROUTES
    assert set(provider["Operation"]) == set(mapping)
