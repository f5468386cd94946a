"""A fake Znuny GenericInterface REST provider (aiohttp) in its own thread and event loop.

It serves the web service of docs/znuny/IntakeConnector.yml with the shapes, validation order
and error texts of Znuny's operations (tests/support/znuny_shapes.py names the sources). The
test thread seeds, inspects and breaks it through thread-safe helpers::

    with FakeZnuny() as znuny:
        znuny.add_ticket("Drucker kaputt", priority_changes=[("5 very high", "agent1")])
        znuny.drop_next_response("TicketCreate")
        ... the code under test talks HTTP to znuny.base_url ...
        assert znuny.find_by_reference("REF-1")["Priority"] == "4 high"

Not modelled: permissions (every agent may do everything), customer users' services, the
Ticket::Type/Ticket::Service switches, owners, locks, pending times, article dynamic fields,
and history rows other than NewTicket, article rows, PriorityUpdate, StateUpdate and Move.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import copy
import itertools
import json
import operator
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.support import znuny_shapes as S
from tests.support.loopserver import LoopServer

JSON = dict[str, Any]
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# As docs/ZNUNY.md sets them up: IntakeDeadline is a Text field (ISO 8601 with its offset).
DEFAULT_FIELDS = {"IntakeReference": "Text", "IntakeDeadline": "Text",
                  "IntakeConfidence": "Text", "IntakeContract": "Text"}  # fmt: skip


@dataclass(frozen=True)
class ZnunyRequest:
    """One request as received; ``path`` is below the web service (``/Ticket/3``)."""

    method: str
    path: str
    operation: str | None  # None: no route matched
    query: dict[str, str]
    body: Any  # the parsed JSON body, None without one


class _ServerFault(Exception):
    """An operation failing without ReturnError(): HTTP 500 with a fault body."""


def _t(value: Any) -> bool:
    """Perl truthiness."""
    return not (value is None or value == "" or value == "0" or value is False or value == 0)


def _hash(value: Any) -> bool:
    return isinstance(value, dict) and bool(value)


def _listish(value: Any) -> bool:
    """IsHashRefWithData or IsArrayRefWithData."""
    return _hash(value) or (isinstance(value, list) and bool(value))


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


def _strip(data: Any) -> JSON:
    if not isinstance(data, dict):
        return {}
    return {k: v.strip() if isinstance(v, str) else v for k, v in data.items()}


def _fmt(moment: datetime | str) -> str:
    if isinstance(moment, str):
        return moment
    if moment.tzinfo is not None:  # Znuny keeps times in OTRSTimeZone, UTC by default
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime(TIME_FORMAT)


def _parse(moment: str) -> datetime:
    return datetime.strptime(moment, TIME_FORMAT)


def _email_ok(value: str) -> bool:
    address = value.rsplit("<", 1)[-1].rstrip(">").strip()
    return re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", address) is not None


def _charset_ok(charset: str) -> bool:
    try:
        return bool(charset) and bool(codecs.lookup(charset))
    except LookupError:
        return False


def _split_content_type(content_type: str) -> tuple[str, str]:
    """(mime type, charset) as TicketCreate.pm _CheckArticle() extracts them."""
    charset = ""
    if "charset=" in content_type.lower():
        charset = re.sub(r".+?charset=(\"|'|)(\w+)", r"\2", content_type, flags=re.I)
        charset = re.sub(r"(.+?);.*", r"\1", charset.replace('"', "").replace("'", ""))
    mime = re.match(r"(\w+/\w+)", content_type)
    return (mime.group(1) if mime else ""), charset


class FakeZnuny(LoopServer):
    """Fake Znuny on 127.0.0.1 (free port) served from a background thread."""

    thread_name = "fake-znuny"

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        queues: Iterable[str] = ("Support",),
        types: Iterable[str] = ("Unclassified",),
        services: Iterable[str] = (),
        slas: Mapping[str, Iterable[str]] | None = None,
        dynamic_fields: Mapping[str, str] | None = None,
        customer_users: Iterable[str] = (),
        ids_as_strings: bool = True,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        """``users``: agent login -> password (default intake/intake-secret); ``slas``: name ->
        the services it belongs to; ``dynamic_fields``: name -> Text|DateTime (default the four
        Intake* fields); ``customer_users``: logins valid besides any e-mail address;
        ``ids_as_strings``: IDs as JSON strings like Znuny on MySQL; ``now``: the clock."""
        super().__init__()
        self.ids_as_strings = ids_as_strings
        self.customer_users = set(customer_users)
        self._now = now or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._users: dict[str, tuple[int, str | None]] = {"root@localhost": (1, None)}
        for login, password in (users or {"intake": "intake-secret"}).items():
            self._users[login] = (len(self._users) + 1, password)
        self._queues = {name: i for i, name in enumerate(queues, 1)}
        self._types = {name: i for i, name in enumerate(types, 1)}
        self._services = {name: i for i, name in enumerate(services, 1)}
        self._slas = {n: (i, set(s)) for i, (n, s) in enumerate((slas or {}).items(), 1)}
        self._fields = dict(DEFAULT_FIELDS if dynamic_fields is None else dynamic_fields)
        self._routes = dict(S.ROUTES)
        self._sessions: dict[str, str] = {}
        self._tickets: dict[int, JSON] = {}
        self._requests: list[ZnunyRequest] = []
        self._injections: list[tuple[str, str | None, Any]] = []
        self._ids = {k: itertools.count(1) for k in ("ticket", "article", "file")}

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{S.BASE_PATH}"

    def _application(self) -> web.Application:
        app = web.Application(client_max_size=100_000_000)  # MaxLength of the web service
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    # ------------------------------------------------------------------ configuration

    def add_user(self, login: str, password: str | None = None) -> int:
        """Add an agent (``password=None``: cannot log in); return its UserID."""
        with self._lock:
            if login not in self._users:
                self._users[login] = (len(self._users) + 1, password)
            return self._users[login][0]

    def add_queue(self, name: str) -> int:
        with self._lock:
            return self._queues.setdefault(name, len(self._queues) + 1)

    def disable(self, operation: str) -> None:
        """Remove the operation from the web service: its route answers like an unknown one."""
        with self._lock:
            self._routes.pop(operation, None)

    def expire_sessions(self) -> None:
        with self._lock:
            self._sessions.clear()

    # ------------------------------------------------------------------ faults
    # ``operation=None`` targets the next call of any operation but SessionCreate.

    def fail_next(
        self, n: int = 1, status: int = 500, *, operation: str | None = None,
        message: str = "Internal Server Error",
    ) -> None:  # fmt: skip
        """Answer ``status`` with a fault body (text/plain), doing nothing."""
        self._inject("fail", operation, (status, message), n)

    def refuse_next(
        self, error_code: str, message: str, n: int = 1, *, operation: str | None = None
    ) -> None:
        """Answer HTTP 200 ``{"Error": {...}}``, doing nothing."""
        self._inject("refuse", operation, S.error(error_code, message), n)

    def drop_next_response(self, operation: str | None = "TicketCreate", n: int = 1) -> None:
        """Perform the operation, then close the connection without an answer."""
        self._inject("drop", operation, None, n)

    def delay_next(self, seconds: float, n: int = 1, *, operation: str | None = None) -> None:
        """Perform the operation, then wait ``seconds`` before answering."""
        self._inject("delay", operation, seconds, n)

    def _inject(self, kind: str, operation: str | None, value: Any, n: int) -> None:
        with self._lock:
            self._injections.extend([(kind, operation, value)] * n)

    def _take_injection(self, op: str) -> tuple[str, Any]:
        for n, (kind, target, value) in enumerate(self._injections):
            if target == op or (target is None and op != "SessionCreate"):
                del self._injections[n]
                return kind, value
        return "", None

    # ------------------------------------------------------------------ observing

    @property
    def requests(self) -> list[ZnunyRequest]:
        with self._lock:
            return list(self._requests)

    def ticket(self, ticket_id: int) -> JSON:
        """A copy of the ticket record: TicketID (int), TicketNumber, Title, Queue, State,
        Priority, Type, Service, SLA, CustomerUser, Created, DynamicField {name: value},
        Articles [{..., Attachments [{Filename, ContentType, Content: bytes}]}], History."""
        with self._lock:
            return copy.deepcopy(self._tickets[int(ticket_id)])

    def tickets(self) -> list[JSON]:
        with self._lock:
            return copy.deepcopy(list(self._tickets.values()))

    def find_by_reference(self, reference: str, field: str = "IntakeReference") -> JSON | None:
        with self._lock:
            found = [t for t in self._tickets.values() if t["DynamicField"].get(field) == reference]
            return copy.deepcopy(found[0]) if found else None

    # ------------------------------------------------------------------ seeding

    def add_ticket(
        self,
        title: str,
        *,
        customer_user: str = "kunde@example.com",
        queue: str = "Support",
        state: str = "open",
        priority: str = "3 normal",
        service: str | None = None,
        sla: str | None = None,
        created: datetime | str | None = None,
        dynamic_fields: Mapping[str, Any] | None = None,
        articles: Sequence[Mapping[str, Any]] | None = None,
        priority_changes: Sequence[tuple[str, str] | tuple[str, str, datetime | str]] = (),
    ) -> JSON:
        """Seed a ticket, e.g. history for an import. ``priority`` is the initial one; each
        change ``(priority, agent_login[, when])`` (default: a minute apart) writes a
        PriorityUpdate row by that agent (added if unknown). ``articles``: dicts with Subject,
        Body, From, SenderType, IsVisibleForCustomer, CommunicationChannel, ContentType,
        HistoryType, CreateTime, Attachments [{Filename, ContentType, Content: bytes}] (default:
        one e-mail from the customer). Returns the record (see :meth:`ticket`)."""
        for _, login, *_ in priority_changes:
            self.add_user(login)
        when = _fmt(created or self._now())
        with self._lock:
            if queue not in self._queues or state not in S.STATES:
                raise ValueError(f"unknown queue {queue!r} or state {state!r}")
            if not {priority, *(c[0] for c in priority_changes)} <= set(S.PRIORITIES):
                raise ValueError("unknown priority")
            ticket = {"Title": title, "Queue": queue, "State": state, "Priority": priority,
                      "CustomerUser": customer_user, "Service": service, "SLA": sla}  # fmt: skip
            rec = self._create(ticket, 1, when)
            rec["DynamicField"].update(dynamic_fields or {})
            for n, article in enumerate(articles or [{"Subject": title, "Body": title}]):
                a = {"SenderType": "customer", "CommunicationChannel": "Email",
                     "ContentType": "text/plain; charset=utf-8", "IsVisibleForCustomer": 1,
                     "From": customer_user, "HistoryType": "EmailCustomer" if n else "NewTicket",
                     **article}  # fmt: skip
                files = [
                    {**f, "Content": base64.b64encode(f["Content"]).decode()}
                    for f in a.pop("Attachments", [])
                ]
                self._add_article(rec, a, files, 1, _fmt(a.get("CreateTime") or when))
            for n, (new, login, *at) in enumerate(priority_changes, 1):
                moment = _fmt(at[0] if at else _parse(when) + timedelta(minutes=n))
                self._set_priority(rec, new, self._users[login][0], moment)
            return copy.deepcopy(rec)

    # ------------------------------------------------------------------ HTTP (REST.pm)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        found = re.search(r"nph-genericinterface\.pl/Webservice/([^/]+)(/.*)?$", request.path)
        if not found or found.group(1) != S.WEBSERVICE:  # Provider.pm bails out: Apache's 500
            return self._text(500, "Internal Server Error")
        path, method, query = found.group(2) or "", request.method, dict(request.query)
        body: Any = None
        if method != "GET" and request.content_length:
            try:
                body = json.loads(await request.text())
            except ValueError:
                return self._text(500, S.UNDECODABLE_BODY)
        with self._lock:
            op, uri = self._match(method, path)
            self._requests.append(ZnunyRequest(method, path, op, query, copy.deepcopy(body)))
            if op is None:
                return self._text(500, S.no_route(path))
            if body is not None and not _hash(body):  # (a non-empty list: not modelled)
                return self._text(500, S.UNSUPPORTED_BODY)
            headers = {v: request.headers[k] for k, v in S.AUTH_HEADERS.items() if k in request.headers}  # fmt: skip
            data = {**(body or {"RequestMethod": method}), **query, **uri, **headers}
            kind, value = self._take_injection(op)
            if kind == "fail":
                return self._text(value[0], json.dumps(S.fault(value[1])))
            if kind == "refuse":
                return self._json(value)
            try:
                result: JSON | str = getattr(self, f"_op_{op}")(data)
            except _ServerFault as fault:
                result = json.dumps(S.fault(str(fault)))
        if kind == "drop":
            if request.transport is not None:
                request.transport.abort()  # aiohttp then skips writing the response
            return web.Response(status=204)
        if kind == "delay":
            await asyncio.sleep(value)
        return self._text(500, result) if isinstance(result, str) else self._json(result)

    def _match(self, method: str, path: str) -> tuple[str | None, dict[str, str]]:
        for op in sorted(self._routes):  # RouteOperationMapping, first match wins
            route_method, route = self._routes[op]
            found = re.fullmatch(re.sub(r":([^/]+)", r"(?P<\1>[^/]+)", route), path)
            if method == route_method and found:
                return op, {k: unquote(v) for k, v in found.groupdict().items()}
        return None, {}

    @staticmethod
    def _json(body: JSON) -> web.Response:
        return web.json_response(body, dumps=lambda b: json.dumps(b, sort_keys=True))

    @staticmethod
    def _text(status: int, text: str) -> web.Response:  # REST.pm _Output() for status != 200
        return web.Response(status=status, text=text, content_type="text/plain")

    # ------------------------------------------------------------------ operations

    def _id(self, value: Any) -> Any:
        return None if value is None else (str(value) if self.ids_as_strings else value)

    def _auth(self, data: JSON) -> int | None:
        """Operation/Common.pm Auth(): a SessionID wins over UserLogin + Password."""
        if _t(data.get("SessionID")):
            login = self._sessions.get(str(data["SessionID"]))
            return None if login is None else self._users[login][0]
        user = self._users.get(str(data.get("UserLogin")))
        ok = user is not None and user[1] is not None and user[1] == data.get("Password")
        return user[0] if ok and user else None

    def _credentials(self, op: str, data: JSON) -> JSON | int:
        """TicketCreate.pm/TicketUpdate.pm Run(): the checks before Auth(), then Auth()."""
        if not any(_t(data.get(k)) for k in ("UserLogin", "CustomerUserLogin", "SessionID")):
            return S.missing(op, S.NO_CREDENTIALS)
        login = _t(data.get("UserLogin")) or _t(data.get("CustomerUserLogin"))
        if login and not _t(data.get("Password")):
            return S.missing(op, S.NO_PASSWORD)
        uid = self._auth(data)
        return S.auth_fail(op) if uid is None else uid

    def _op_SessionCreate(self, data: JSON) -> JSON:
        if not _t(data.get("Password")):
            return S.SESSION_NO_PASSWORD
        if self._auth({"UserLogin": data.get("UserLogin"), "Password": data["Password"]}) is None:
            return S.auth_fail("SessionCreate")  # Session/Common.pm CreateSessionID()
        session_id = secrets.token_hex(16)
        self._sessions[session_id] = str(data["UserLogin"])
        return {"SessionID": session_id}

    def _op_TicketCreate(self, data: JSON) -> JSON:
        op = "TicketCreate"
        uid = self._credentials(op, data)
        if isinstance(uid, dict):
            return uid
        for part in ("Ticket", "Article"):
            if not _hash(data.get(part)):
                return S.missing(op, S.PART_MISSING.format(part))
        ticket, article = _strip(data["Ticket"]), _strip(data["Article"])
        fields, files = _as_list(data.get("DynamicField")), _as_list(data.get("Attachment"))
        error = (
            self._check_parts(op, data)
            or self._check_ticket(op, ticket)
            or self._check_article(op, article)
            or self._check_fields(op, fields)
            or self._check_files(op, files)
        )
        if error:
            return error
        rec = self._create(ticket, uid, _fmt(self._now()))
        rec["DynamicField"].update({f["Name"]: str(f["Value"]) for f in fields})
        article_id = self._add_article(rec, article, files, uid, rec["Created"])
        return S.created(self._id(rec["TicketID"]), rec["TicketNumber"], self._id(article_id))

    def _op_TicketUpdate(self, data: JSON) -> JSON:
        op = "TicketUpdate"
        if not _t(data.get("TicketID")):  # (or TicketNumber, not modelled)
            return S.UPDATE_NO_TICKET
        uid = self._credentials(op, data)
        if isinstance(uid, dict):
            return uid
        rec = self._tickets.get(int(data["TicketID"])) if str(data["TicketID"]).isdigit() else None
        if rec is None:
            return S.UPDATE_DENIED
        if "Ticket" in data and not _hash(data["Ticket"]):
            return S.UPDATE_BAD_TICKET
        ticket, article = _strip(data.get("Ticket")), data.get("Article")
        if error := self._check_parts(op, data) or self._check_ticket(op, ticket, rec):
            return error
        if article is not None and not _hash(article):
            return S.UPDATE_BAD_ARTICLE
        article = _strip(article) if article else None
        fields, files = _as_list(data.get("DynamicField")), _as_list(data.get("Attachment"))
        error = (
            (article and self._check_article(op, article))
            or self._check_fields(op, fields)
            or (files and not article and S.UPDATE_ATTACHMENT_NEEDS_ARTICLE)
            or self._check_files(op, files)
        )
        if error:
            return error
        now = _fmt(self._now())
        self._apply(rec, ticket, uid, now)
        result = S.updated(data["TicketID"], rec["TicketNumber"])
        if article:
            result["ArticleID"] = self._id(self._add_article(rec, article, files, uid, now))
        rec["DynamicField"].update({f["Name"]: str(f["Value"]) for f in fields})
        rec["Changed"], rec["ChangeBy"] = now, uid
        return result

    def _ticket_ids(self, raw: Any) -> list[str]:
        return [str(i) for i in raw] if isinstance(raw, list) else re.split(r"\s*,\s*", str(raw))

    def _op_TicketGet(self, data: JSON) -> JSON:
        if self._auth(data) is None:
            return S.auth_fail("TicketGet")
        if not _t(data.get("TicketID")):
            return S.GET_NO_ID
        ids = self._ticket_ids(data["TicketID"])
        if not all(re.fullmatch(r"[1-9]\d*", i) for i in ids):
            return S.GET_BAD_ID
        if not all(int(i) in self._tickets for i in ids):
            return S.GET_DENIED
        entries = []
        for rec in (self._tickets[int(i)] for i in ids):
            entry = self._wire_ticket(rec)
            if _t(data.get("DynamicFields")):
                entry["DynamicField"] = [
                    {"Name": n, "Value": rec["DynamicField"].get(n)} for n in sorted(self._fields)
                ]
            if _t(data.get("AllArticles")) and rec["Articles"]:
                entry["Article"] = [
                    self._wire_article(rec, a, _t(data.get("Attachments"))) for a in rec["Articles"]
                ]
            entries.append(entry)
        return {"Ticket": entries}

    def _op_TicketHistoryGet(self, data: JSON) -> JSON:
        if self._auth(data) is None:
            return S.auth_fail("TicketHistoryGet")
        if not _t(data.get("TicketID")):
            return S.missing("TicketHistoryGet", "TicketID parameter is missing!")
        ids = self._ticket_ids(data["TicketID"])
        for i in ids:
            if not i.isdigit() or int(i) not in self._tickets:
                return S.history_denied(i)
        return {"TicketHistory": [
            {"TicketID": i, "History": [S.history_row(r, self._id) for r in sorted(
                self._tickets[int(i)]["History"], key=lambda r: r["CreateTime"])]}
            for i in ids
        ]}  # fmt: skip

    def _op_TicketSearch(self, data: JSON) -> JSON:
        """Queues, States, StateType (Open|Closed|types), Priorities, CustomerUserLogin,
        DynamicField_<Name> {Equals|Empty}, TicketCreateTime{Newer,Older}Date, Limit,
        OrderBy (SortBy Age). Other parameters are ignored."""
        if self._auth(data) is None:
            return S.auth_fail("TicketSearch")
        tickets = list(self._tickets.values())
        state_types = data.get("StateType")
        if state_types in ("Open", "Closed"):
            state_types = list(S.OPEN_STATE_TYPES) if state_types == "Open" else ["closed"]
        criteria = {"Queue": data.get("Queues"), "State": data.get("States"),
                    "Priority": data.get("Priorities"), "CustomerUser": data.get("CustomerUserLogin"),
                    "StateType": state_types}  # fmt: skip
        for attr, wanted in criteria.items():
            if _listish(wanted) or (isinstance(wanted, str) and wanted):
                tickets = [t for t in tickets if self._attr(t, attr) in _as_list(wanted)]
        for key, keep in (("TicketCreateTimeNewerDate", operator.ge),
                          ("TicketCreateTimeOlderDate", operator.le)):  # fmt: skip
            if _t(data.get(key)):
                try:
                    bound = _parse(str(data[key]).strip())
                except ValueError:  # Kernel/System/Ticket/TicketSearch.pm logs, finds nothing
                    return S.search_result([])
                tickets = [t for t in tickets if keep(_parse(t["Created"]), bound)]
        for name in self._fields:  # conditions on unknown fields are silently dropped
            cond = data.get(f"DynamicField_{name}")
            if isinstance(cond, dict):
                tickets = [t for t in tickets if self._df_matches(t["DynamicField"].get(name), cond)]  # fmt: skip
        tickets.sort(key=lambda t: (t["Created"], t["TicketID"]), reverse=data.get("OrderBy") != "Up")  # fmt: skip
        limit = int(data["Limit"]) if _t(data.get("Limit")) else 500
        return S.search_result([self._id(t["TicketID"]) for t in tickets[:limit]])

    @staticmethod
    def _attr(ticket: JSON, attr: str) -> Any:
        return S.STATES[ticket["State"]] if attr == "StateType" else ticket[attr]

    @staticmethod
    def _df_matches(value: Any, cond: JSON) -> bool:
        if "Empty" in cond and (value in (None, "")) != _t(cond["Empty"]):
            return False
        return "Equals" not in cond or str(value) in map(str, _as_list(cond["Equals"]))

    # ------------------------------------------------------------------ validation

    def _check_parts(self, op: str, data: JSON) -> JSON | None:
        for part in ("DynamicField", "Attachment"):
            if part in data and not _listish(data[part]):  # an empty list or {} included
                return S.missing(op, S.PART_MISSING.format(part))
        return None

    def _tables(self) -> dict[str, Mapping[str, int]]:
        return {"Queue": self._queues, "Type": self._types, "Service": self._services,
                "SLA": {k: v[0] for k, v in self._slas.items()},
                "State": {s: i for i, s in enumerate(S.STATES, 1)},
                "Priority": {p: i for i, p in enumerate(S.PRIORITIES, 1)}}  # fmt: skip

    def _check_ticket(self, op: str, t: JSON, old: JSON | None = None) -> JSON | None:
        """_CheckTicket() of TicketCreate.pm (``old`` None) or TicketUpdate.pm; it turns
        <Key>ID into <Key> names in ``t``."""
        for key in ("Title", "CustomerUser") if old is None else ():
            if not _t(t.get(key)):
                return S.missing(op, S.TICKET_MISSING.format(key))
        customer = t.get("CustomerUser")
        known = customer in self.customer_users or _email_ok(str(customer))
        if (old is None or _t(customer)) and not known:
            return S.invalid(op, S.CUSTOMER_INVALID)
        required = {"Queue": S.QUEUE_REQUIRED, "State": S.STATE_REQUIRED,
                    "Priority": S.PRIORITY_REQUIRED}  # fmt: skip
        for key, table in self._tables().items():  # in the order of _CheckTicket()
            if not (_t(t.get(key)) or _t(t.get(f"{key}ID"))):
                if old is None and key in required:
                    return S.missing(op, required[key])
                continue
            if _t(t.get(key)) and not _t(t.get(f"{key}ID")):
                name = t[key] if isinstance(t[key], str) and t[key] in table else None
            else:
                name = {str(v): k for k, v in table.items()}.get(str(t[f"{key}ID"]))
            if key == "SLA" and name is not None:  # ValidateSLA(): needs its Service
                service = t.get("Service") or (old or {}).get("Service")
                name = name if service in self._slas[name][1] else None
            if name is None:
                return S.invalid(op, S.TICKET_INVALID.format(key))
            t[key] = name
        return None

    def _check_article(self, op: str, a: JSON) -> JSON | None:
        """_CheckArticle() after the operation's defaults; normalises the content type."""
        a["CommunicationChannel"] = a.get("CommunicationChannel") or "Internal"
        a["SenderType"] = a.get("SenderType") or "agent"  # the caller is an agent
        a["IsVisibleForCustomer"] = 1 if a.get("IsVisibleForCustomer") is None else a["IsVisibleForCustomer"]  # fmt: skip
        a["HistoryType"] = a.get("HistoryType") or S.ARTICLE_HISTORY_TYPE[op]
        for key in ("Subject", "Body"):
            if not _t(a.get(key)):
                return S.missing(op, S.ARTICLE_MISSING.format(key))
        checks = [
            (a["CommunicationChannel"] not in S.CHANNELS, S.CHANNEL_INVALID),
            (a["SenderType"] not in S.SENDER_TYPES, S.SENDER_TYPE_INVALID),
            (_t(a.get("From")) and not _email_ok(str(a.get("From"))), S.FROM_INVALID),
        ]
        for failed, message in checks:
            if failed:
                return S.invalid(op, message)
        content_type, mime, charset = (str(a.get(k) or "").lower() for k in ("ContentType", "MimeType", "Charset"))  # fmt: skip
        if not (content_type or mime or charset):
            return S.missing(op, S.CONTENT_TYPE_REQUIRED)
        if bool(mime) != bool(charset):
            return S.missing(op, S.CHARSET_REQUIRED if mime else S.MIMETYPE_REQUIRED)
        if mime and not re.fullmatch(r"\w+/\w+", mime):
            return S.invalid(op, S.MIMETYPE_INVALID)
        if charset and not _charset_ok(charset):
            return S.invalid(op, S.CHARSET_INVALID)
        if content_type:
            mime, charset = _split_content_type(content_type)
            if not mime or not _charset_ok(charset):  # "text/plain" without charset too
                return S.invalid(op, S.CONTENT_TYPE_INVALID)
        a.update(MimeType=mime, Charset=charset, ContentType=content_type or f"{mime}; charset={charset}")  # fmt: skip
        if a["HistoryType"] not in S.HISTORY_TYPES:
            return S.invalid(op, S.HISTORY_TYPE_INVALID)
        return None

    def _check_fields(self, op: str, fields: list[Any]) -> JSON | None:
        for item in fields:
            if not _hash(item):  # returned without ReturnError(): a 500 fault
                raise _ServerFault(f"{op}: Ticket->DynamicField parameter is invalid!")
            for key in ("Name", "Value"):
                value = item.get(key)
                if isinstance(value, bool) or not isinstance(value, str | int | float | list):
                    return S.missing(op, S.DF_MISSING[op].format(key))
            kind, value = self._fields.get(str(item["Name"])), item["Value"]
            if kind is None:
                return S.invalid(op, S.DF_NAME_INVALID)
            datetime_ok = re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", str(value))
            if isinstance(value, list) or (kind == "DateTime" and not datetime_ok):
                return S.invalid(op, S.DF_VALUE_INVALID)
        return None

    def _check_files(self, op: str, files: list[Any]) -> JSON | None:
        for item in files:
            if not _hash(item):
                raise _ServerFault(f"{op}: Ticket->Attachment parameter is invalid!")
            for key in ("Content", "ContentType", "Filename"):
                if not isinstance(item.get(key), str | int | float) or str(item[key]) == "":
                    return S.missing(op, S.ATTACHMENT_MISSING[op].format(key))
            mime, charset = _split_content_type(str(item["ContentType"]).lower())
            if not mime or (charset and not _charset_ok(charset)):
                return S.invalid(op, S.ATTACHMENT_INVALID)
        return None

    # ------------------------------------------------------------------ state changes

    def _history(
        self, rec: JSON, kind: str, name: str, uid: int, when: str, article: int | None = None
    ) -> None:
        """Kernel/System/Ticket.pm HistoryAdd(): the row keeps the ticket's current IDs."""
        tables = self._tables()
        rec["History"].append({
            "TicketID": rec["TicketID"], "ArticleID": article, "Name": name, "CreateBy": uid,
            "CreateTime": when, "HistoryType": kind, "HistoryTypeID": S.HISTORY_TYPES[kind],
            "QueueID": tables["Queue"][rec["Queue"]], "OwnerID": rec["OwnerID"],
            "PriorityID": tables["Priority"][rec["Priority"]],
            "StateID": tables["State"][rec["State"]], "TypeID": self._types.get(rec["Type"], 1),
        })  # fmt: skip

    def _create(self, t: JSON, uid: int, when: str) -> JSON:
        tid = next(self._ids["ticket"])
        number = f"{when[:10].replace('-', '')}10{tid:06d}"  # date, SystemID 10, counter
        rec: JSON = {
            "TicketID": tid, "TicketNumber": number, "Title": t["Title"], "Queue": t["Queue"],
            "State": t["State"], "Priority": t["Priority"],
            "Type": t.get("Type") or next(iter(self._types), "Unclassified"),
            "Service": t.get("Service") or None, "SLA": t.get("SLA") or None,
            "CustomerUser": t["CustomerUser"], "CustomerID": t.get("CustomerID") or "",
            "OwnerID": uid, "Created": when, "CreateBy": uid, "Changed": when, "ChangeBy": uid,
            "DynamicField": {}, "Articles": [], "History": [],
        }  # fmt: skip
        self._tickets[tid] = rec
        name = S.new_ticket_name(number, rec["Queue"], rec["Priority"], rec["State"], tid)
        self._history(rec, "NewTicket", name, uid, when)
        return rec

    def _add_article(self, rec: JSON, a: JSON, files: list[JSON], uid: int, when: str) -> int:
        article_id = next(self._ids["article"])
        mime, charset = _split_content_type(a["ContentType"])
        rec["Articles"].append({
            "ArticleID": article_id, "From": a.get("From") or rec["CustomerUser"],
            "To": rec["Queue"], "Subject": a["Subject"], "Body": a["Body"],
            "SenderType": a["SenderType"], "IsVisibleForCustomer": int(_t(a["IsVisibleForCustomer"])),
            "CommunicationChannel": a["CommunicationChannel"], "ContentType": a["ContentType"],
            "MimeType": mime, "Charset": charset, "CreateTime": when, "CreateBy": uid,
            "Attachments": [{"FileID": next(self._ids["file"]), "Filename": f["Filename"],
                             "ContentType": str(f["ContentType"]),
                             "Content": base64.b64decode(str(f["Content"]))} for f in files],
        })  # fmt: skip
        comment = a.get("HistoryComment") or "%%"
        self._history(rec, a["HistoryType"], comment, uid, when, article_id)
        return article_id

    def _set_priority(self, rec: JSON, new: str, uid: int, when: str) -> None:
        old, rec["Priority"] = rec["Priority"], new
        old_id, new_id = S.PRIORITIES.index(old) + 1, S.PRIORITIES.index(new) + 1
        self._history(rec, "PriorityUpdate", S.priority_update_name(old, old_id, new, new_id), uid, when)  # fmt: skip

    def _apply(self, rec: JSON, t: JSON, uid: int, when: str) -> None:
        """TicketUpdate.pm _TicketUpdate(): set what changed, with its history row."""
        if _t(t.get("Title")):
            rec["Title"] = t["Title"]
        if t.get("Queue") and t["Queue"] != rec["Queue"]:
            old, rec["Queue"] = rec["Queue"], t["Queue"]
            name = S.move_name(rec["Queue"], self._queues[rec["Queue"]], old, self._queues[old])
            self._history(rec, "Move", name, uid, when)
        if t.get("State") and t["State"] != rec["State"]:
            old, rec["State"] = rec["State"], t["State"]
            self._history(rec, "StateUpdate", S.state_update_name(old, rec["State"]), uid, when)
        if t.get("Priority") and t["Priority"] != rec["Priority"]:
            self._set_priority(rec, t["Priority"], uid, when)
        rec.update({k: t[k] for k in ("Type", "Service", "SLA", "CustomerUser") if _t(t.get(k))})

    # ------------------------------------------------------------------ wire shapes

    def _wire_ticket(self, rec: JSON) -> JSON:
        tables = self._tables()
        ids = {key: tables[key].get(rec[key]) for key in tables}
        owner = next(login for login, (uid, _) in self._users.items() if uid == rec["OwnerID"])
        age = (_parse(_fmt(self._now())) - _parse(rec["Created"])).total_seconds()
        return S.ticket_entry(rec, self._id, ids, owner, int(age))

    def _wire_article(self, rec: JSON, a: JSON, attachments: bool) -> JSON:
        incoming = int(_parse(a["CreateTime"]).replace(tzinfo=UTC).timestamp())
        entry = S.article_entry(rec, a, self._id, incoming)
        if attachments and a["Attachments"]:
            entry["Attachment"] = [
                S.attachment_entry(f, self._id, n) for n, f in enumerate(a["Attachments"], 1)
            ]
        return entry
