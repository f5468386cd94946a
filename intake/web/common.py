"""What every staff page shares: the page renderer, the login dependency and form checks."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from intake.calendar import format_deadline
from intake.clock import Clock
from intake.config import Config
from intake.db.tables import Staff
from intake.domain import ContractModel, TicketStatus
from intake.passwords import session_version
from intake.replies import TEMPLATES_DIR
from intake.web import queries
from intake.web.auth import LoginLimiter, local_path, same_token

MAX_PAGE = 1_000_000
MAX_NUMBER = 32  # characters of a ticket number (the column's size)
MAX_NAME = 128  # characters of a staff name (the column's size)
MALFORMED = "Ungültige Anfrage."


class LoginRequired(Exception):
    """No valid session: the browser goes to the login page and, after it, back to `target`."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


class FormRefused(Exception):
    """A form that changes something came without the session's token (or malformed)."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass
class Web:
    """The staff pages' shared parts, built once by create_app (app.state.web)."""

    cfg: Config
    sessions: sessionmaker[Session]
    clock: Clock
    templates: Jinja2Templates = field(init=False)
    calendars: queries.Calendars = field(init=False)
    limiter: LoginLimiter = field(init=False)
    account_limiter: LoginLimiter = field(init=False)
    hashing: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        cfg = self.cfg
        env = Environment(
            loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True, undefined=StrictUndefined
        )
        env.filters["deadline"] = lambda d: format_deadline(d, cfg.zone) if d else "–"
        env.filters["local"] = lambda d: (
            d.astimezone(cfg.zone).strftime("%d.%m.%Y %H:%M") if d else "–"
        )
        env.globals["status_label"] = lambda value: TicketStatus(value).label
        env.globals["contract_labels"] = {m.value: m.label for m in ContractModel}
        self.templates = Jinja2Templates(env=env)
        self.calendars = queries.Calendars(cfg)
        self.limiter = LoginLimiter(cfg.web.login_attempts, cfg.web.login_window_seconds)
        self.account_limiter = LoginLimiter(
            cfg.web.login_attempts_per_account, cfg.web.login_window_seconds
        )
        self.hashing = threading.BoundedSemaphore(cfg.web.login_hash_concurrency)

    def page(
        self, request: Request, name: str, status_code: int = 200, **values: Any
    ) -> HTMLResponse:
        values.setdefault("staff", getattr(request.state, "staff", None))
        values.setdefault("csrf", request.session.get("csrf", ""))
        return self.templates.TemplateResponse(
            request, f"web/{name}.html.j2", values, status_code=status_code
        )

    def signed_in(self, request: Request) -> str | None:
        """The staff member of this session, if the account still has the session's version
        (logging out and a new password count it up; the database decides, not the cookie)."""
        name, version = request.session.get("staff"), request.session.get("version")
        if not isinstance(name, str) or not isinstance(version, int):
            return None
        with self.sessions() as session:
            current = session_version(session, name)
        if current != version:
            request.session.clear()
            return None
        request.state.staff = name
        return name


def web(request: Request) -> Web:
    found: Web = request.app.state.web
    return found


def return_to(request: Request) -> str:
    """Where the login page sends the browser back: the page itself for a GET; for a form
    post (its session ran out meanwhile) the page the form was on, never the post's address,
    which answers no GET."""
    if request.method == "GET":
        query = f"?{request.url.query}" if request.url.query else ""
        return local_path(request.url.path + query)
    referer = request.headers.get("referer", "")
    origin = f"{request.url.scheme}://{request.url.netloc}"
    if referer.startswith(origin + "/"):
        return local_path(referer[len(origin) :])
    path = request.url.path.rstrip("/")
    return local_path(path.rsplit("/", 1)[0] or "/") if path.startswith("/tickets/") else "/"


def staff_member(request: Request) -> str:
    """The login dependency of every staff page: the signed-in name, else to the login page."""
    name = web(request).signed_in(request)
    if name is None:
        raise LoginRequired(return_to(request))
    return name


Pages = Annotated[Web, Depends(web)]
SignedIn = Annotated[str, Depends(staff_member)]


def form_staff(request: Request, staff: SignedIn, csrf: str = Form("")) -> str:
    """Every form that changes something: a login and the session's form token."""
    if not same_token(request.session.get("csrf"), csrf):
        raise FormRefused("Ungültiges Formular (CSRF).", 403)
    return staff


FormStaff = Annotated[str, Depends(form_staff)]


def plain_text(value: str, lines: bool = False) -> bool:
    """No control characters (PostgreSQL refuses NUL in text); `lines` allows line breaks."""
    allowed = "\t\r\n" if lines else ""
    return all(c.isprintable() or c in allowed for c in value)


def plausible_number(number: str) -> bool:
    return len(number) <= MAX_NUMBER and plain_text(number)


def staff_names(session: Session) -> list[str]:
    """Everyone tickets can be assigned to."""
    return list(session.scalars(select(Staff.name).order_by(Staff.name)))


def flash(request: Request) -> str | None:
    """A one-time message for the next page (what the last action did), then gone."""
    message = request.session.pop("flash", None)
    return message if isinstance(message, str) else None


def because(reason: str, note: str) -> str:
    """What staff gave as the reason of a correction: the chosen reason and their note."""
    return f"{reason}: {note.strip()}" if note.strip() else reason
