"""A small typed client for Znuny's GenericInterface REST web service (the operations the
shipped docs/znuny/IntakeConnector.yml maps): SessionCreate, TicketCreate, TicketUpdate,
TicketSearch, TicketGet, TicketHistoryGet.

Znuny answers most faults with HTTP 200 and ``{"Error": {"ErrorCode", "ErrorMessage"}}``: that
is a ZnunyError here, never a success. A session that expired is renewed once per call.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import httpx

from intake.config import ZnunyConfig

JSON = dict[str, Any]
# Error codes that mean "log in again": the session expired or was never valid.
SESSION_ERRORS = ("AuthFail", "InvalidSessionID", "SessionIDInvalid")
# What REST.pm answers (HTTP 500, text/plain) when no route of the web service matches.
NO_OPERATION = "Error while determine Operation"


class ZnunyUnavailable(Exception):
    """Znuny could not be reached or failed (connection refused, timeout, HTTP 5xx): retry later.
    `unclear` when the request may have been carried out (the answer was lost)."""

    def __init__(self, message: str, *, unclear: bool) -> None:
        super().__init__(message)
        self.unclear = unclear


class ZnunyError(Exception):
    """Znuny refused the request (an Error body, or HTTP 4xx): its code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Created:
    ticket_id: int
    ticket_number: str
    article_id: int | None


class ZnunyClient:
    """One client per process; thread-safe (the outbox delivers from several threads)."""

    def __init__(self, cfg: ZnunyConfig, transport: httpx.BaseTransport | None = None) -> None:
        if cfg.url is None or cfg.user is None or cfg.password is None:
            raise ValueError("znuny.url, znuny.user and INTAKE_ZNUNY__PASSWORD are needed")
        self.cfg = cfg
        self.url = cfg.url
        self._http = httpx.Client(
            timeout=cfg.timeout_seconds,
            verify=cfg.verify_tls,
            transport=transport,
            headers={"Accept": "application/json"},
            follow_redirects=False,
        )
        self._session_id: str | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    # -- the wire ----------------------------------------------------------------------------

    def _send(self, method: str, route: str, operation: str, body: JSON | None = None) -> JSON:
        """One request; the answer's JSON, or ZnunyError/ZnunyUnavailable."""
        url = f"{self.url}/{route}"
        try:
            if method == "GET":
                response = self._http.get(url, params=body)
            else:
                response = self._http.request(method, url, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ZnunyUnavailable(
                f"{operation}: Znuny nicht erreichbar ({exc})", unclear=False
            ) from exc
        except httpx.TransportError as exc:
            # Sent, but the answer was lost (timeout, dropped connection): it may have happened.
            raise ZnunyUnavailable(
                f"{operation}: keine Antwort von Znuny ({type(exc).__name__}: {exc})", unclear=True
            ) from exc
        if response.status_code == 500 and NO_OPERATION in response.text:
            # REST.pm: no route of the web service matches: a configuration fault, not an outage.
            raise ZnunyError(
                f"{operation}.NoOperation",
                f"der Web-Service hat keine Operation {operation} für {method} /{route}: "
                f"{_excerpt(response.text)}",
            )
        if response.status_code >= 500:
            raise ZnunyUnavailable(
                f"{operation}: Znuny antwortete HTTP {response.status_code}: "
                f"{_excerpt(response.text)}",
                unclear=True,
            )
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400 or not isinstance(data, dict):
            raise ZnunyError(
                f"HTTP{response.status_code}",
                f"{operation}: unerwartete Antwort (HTTP {response.status_code}): "
                f"{_excerpt(response.text)}",
            )
        error = data.get("Error")
        if isinstance(error, dict):
            raise ZnunyError(str(error.get("ErrorCode", "")), str(error.get("ErrorMessage", "")))
        return data

    def _login(self) -> str:
        assert self.cfg.user is not None and self.cfg.password is not None
        data = self._send(
            "POST",
            "Session",
            "SessionCreate",
            {"UserLogin": self.cfg.user, "Password": self.cfg.password.get_secret_value()},
        )
        session_id = data.get("SessionID")
        if not isinstance(session_id, str) or not session_id:
            raise ZnunyError("SessionCreate", "keine SessionID in der Antwort")
        return session_id

    def _session(self, renew: bool = False) -> str:
        with self._lock:
            if renew or self._session_id is None:
                self._session_id = self._login()
            return self._session_id

    def call(self, method: str, route: str, operation: str, body: JSON | None = None) -> JSON:
        """An operation with our session; an expired session is renewed and the call repeated
        once."""
        body = dict(body or {})
        session_id = self._session()
        try:
            return self._send(method, route, operation, {**body, "SessionID": session_id})
        except ZnunyError as exc:
            if not exc.code.endswith(SESSION_ERRORS):
                raise
        return self._send(
            method, route, operation, {**body, "SessionID": self._session(renew=True)}
        )

    # -- operations --------------------------------------------------------------------------

    def check_login(self) -> None:
        """Log in afresh (for `intake znuny check`)."""
        self._session(renew=True)

    def create_ticket(
        self,
        ticket: JSON,
        article: JSON,
        dynamic_fields: list[JSON],
        attachments: list[JSON],
    ) -> Created:
        body: JSON = {"Ticket": ticket, "Article": article}
        # Znuny refuses an empty list (MissingParameter): leave the key out instead.
        if dynamic_fields:
            body["DynamicField"] = dynamic_fields
        if attachments:
            body["Attachment"] = attachments
        data = self.call("POST", "Ticket", "TicketCreate", body)
        try:
            return Created(
                int(data["TicketID"]),
                str(data["TicketNumber"]),
                int(data["ArticleID"]) if data.get("ArticleID") else None,
            )
        except (KeyError, TypeError, ValueError):
            raise ZnunyError(
                "TicketCreate", f"unerwartete Antwort: {_excerpt(str(data))}"
            ) from None

    def update_ticket(
        self,
        ticket_id: int,
        ticket: JSON | None = None,
        article: JSON | None = None,
        dynamic_fields: list[JSON] | None = None,
        attachments: list[JSON] | None = None,
    ) -> JSON:
        body: JSON = {"TicketID": ticket_id}
        if ticket:
            body["Ticket"] = ticket
        if article:
            body["Article"] = article
        if dynamic_fields:
            body["DynamicField"] = dynamic_fields
        if attachments:
            body["Attachment"] = attachments
        return self.call("PATCH", f"Ticket/{ticket_id}", "TicketUpdate", body)

    def search(self, conditions: JSON) -> list[int]:
        """TicketSearch: the ids found (Znuny returns {} for none)."""
        data = self.call("POST", "TicketSearch", "TicketSearch", conditions)
        found = data.get("TicketID") or []
        if not isinstance(found, list):
            found = [found]
        return [int(i) for i in found]

    def find_by_reference(self, reference: str) -> tuple[int, str] | None:
        """The Znuny ticket (id, number) that carries our ticket number, if one does.

        Each hit is read back: Znuny's search silently drops a condition on a dynamic field
        that does not exist, and would then return any ticket."""
        name = self.cfg.dynamic_fields.reference
        condition = {f"DynamicField_{name}": {"Equals": reference}, "Limit": 5}
        for ticket_id in sorted(self.search(condition)):
            ticket = self.get_ticket(ticket_id, articles=False)
            value = field_value(ticket, name)
            # An answer without any dynamic field cannot say otherwise: the search stands.
            if value == reference or (value is None and not has_fields(ticket)):
                return ticket_id, str(ticket.get("TicketNumber", ""))
        return None

    def get_ticket(self, ticket_id: int, *, articles: bool = True) -> JSON:
        data = self.call(
            "GET",
            f"Ticket/{ticket_id}",
            "TicketGet",
            {"AllArticles": 1 if articles else 0, "DynamicFields": 1},
        )
        tickets = data.get("Ticket")
        if not isinstance(tickets, list) or not tickets or not isinstance(tickets[0], dict):
            raise ZnunyError("TicketGet", f"Ticket {ticket_id} nicht in der Antwort")
        ticket: JSON = tickets[0]
        return ticket

    def history(self, ticket_id: int) -> list[JSON]:
        data = self.call("GET", f"TicketHistory/{ticket_id}", "TicketHistoryGet")
        entries = data.get("TicketHistory") or []
        if isinstance(entries, dict):
            entries = [entries]
        rows: list[JSON] = []
        for entry in entries:
            if isinstance(entry, dict):
                history = entry.get("History") or []
                rows.extend(h for h in history if isinstance(h, dict))
        return rows


def field_value(ticket: JSON, name: str) -> str | None:
    """A dynamic field's value in TicketGet's answer: a list of {Name, Value} (Znuny 6+), or a
    key DynamicField_<Name> (OTRS 5)."""
    for field in ticket.get("DynamicField") or []:
        if isinstance(field, dict) and field.get("Name") == name:
            value = field.get("Value")
            return None if value is None else str(value)
    value = ticket.get(f"DynamicField_{name}")
    return None if value is None else str(value)


def has_fields(ticket: JSON) -> bool:
    """Whether TicketGet's answer lists the ticket's dynamic fields at all."""
    return bool(ticket.get("DynamicField")) or any(k.startswith("DynamicField_") for k in ticket)


def _excerpt(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[:limit]
