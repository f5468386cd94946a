"""create_app(): the staff pages (FastAPI + Jinja2), German, behind a login."""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy.orm import Session, sessionmaker
from starlette.middleware.sessions import SessionMiddleware

from intake.calendar import format_deadline
from intake.clock import Clock, utcnow
from intake.config import Config
from intake.corrections import training_corrections
from intake.db import store
from intake.domain import ContractModel, Priority, TicketStatus
from intake.passwords import check_login, end_sessions, session_version
from intake.replies import TEMPLATES_DIR
from intake.staff import (
    StaffActionRefused,
    accept_held,
    assign_held,
    correct_priority,
    correct_service,
    notify_priority,
    reject_held,
)
from intake.web import queries
from intake.web.auth import LoginLimiter, local_path, new_token, same_token

log = logging.getLogger("intake.web")

REASONS = (
    "Produktivsystem nicht betroffen",
    "Workaround vorhanden",
    "Kein Workaround",
    "Mehr Benutzer betroffen als erkannt",
    "Weniger Benutzer betroffen",
    "Frage oder Wunsch, keine Störung",
    "Vorschlag bestätigt",
)
SERVICE_REASONS = (
    "Falsche Leistung erkannt",
    "Mehrere Leistungen: die überwiegende",
    "Vorschlag bestätigt",
)
PRIORITIES = frozenset(p.value for p in Priority)
STATUSES = frozenset(s.value for s in TicketStatus)
MAX_PAGE = 1_000_000
MAX_NUMBER = 32  # characters of a ticket number (the column's size)
MAX_NAME = 128  # characters of a staff name (the column's size)
MALFORMED = "Ungültige Anfrage."


def plain_text(value: str, lines: bool = False) -> bool:
    """No control characters (PostgreSQL refuses NUL in text); `lines` allows line breaks."""
    allowed = "\t\r\n" if lines else ""
    return all(c.isprintable() or c in allowed for c in value)


def create_app(
    cfg: Config,
    sessions: sessionmaker[Session],
    clock: Clock = utcnow,
    telegram_webhook: Callable[[dict[str, Any]], Awaitable[bool]] | None = None,
) -> FastAPI:
    """The staff pages; with `telegram_webhook`, also the endpoint Telegram posts updates to."""
    app = FastAPI(
        title="Support intake – Mitarbeiter", docs_url=None, redoc_url=None, openapi_url=None
    )
    key = cfg.web.secret_key.get_secret_value() if cfg.web.secret_key else None
    if key is None:
        key = secrets.token_urlsafe(32)
        log.warning("web.secret_key not set: sessions end when the service restarts")
    app.add_middleware(
        SessionMiddleware,
        secret_key=key,
        session_cookie="intake_session",
        max_age=8 * 3600,
        same_site="strict",
        https_only=cfg.web.secure_cookies,
    )
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True, undefined=StrictUndefined
    )
    env.filters["deadline"] = lambda d: format_deadline(d, cfg.zone) if d else "–"
    env.filters["local"] = lambda d: d.astimezone(cfg.zone).strftime("%d.%m.%Y %H:%M") if d else "–"
    templates = Jinja2Templates(env=env)
    limiter = LoginLimiter(cfg.web.login_attempts, cfg.web.login_window_seconds)
    account_limiter = LoginLimiter(cfg.web.login_attempts_per_account, cfg.web.login_window_seconds)
    hashing = threading.BoundedSemaphore(cfg.web.login_hash_concurrency)
    calendars = queries.Calendars(cfg)

    def page(request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        values.setdefault("staff", getattr(request.state, "staff", None))
        values.setdefault("csrf", request.session.get("csrf", ""))
        return templates.TemplateResponse(
            request, f"web/{name}.html.j2", values, status_code=status_code
        )

    def signed_in(request: Request) -> str | None:
        """The staff member of this session, if the account still has the session's version
        (logging out and a new password count it up; the database decides, not the cookie)."""
        name, version = request.session.get("staff"), request.session.get("version")
        if not isinstance(name, str) or not isinstance(version, int):
            return None
        with sessions() as session:
            current = session_version(session, name)
        if current != version:
            request.session.clear()
            return None
        request.state.staff = name
        return name

    def login_first(request: Request) -> RedirectResponse | None:
        if signed_in(request) is not None:
            return None
        target = urlencode({"next": request.url.path})
        return RedirectResponse(f"/login?{target}", status_code=303)

    def plausible_number(number: str) -> bool:
        return len(number) <= MAX_NUMBER and plain_text(number)

    def refuse_form(request: Request, csrf: str) -> Response | None:
        """Every form that changes something needs a login and the session's CSRF token."""
        if (redirect := login_first(request)) is not None:
            return redirect
        if not same_token(request.session.get("csrf"), csrf):
            return Response("Ungültiges Formular (CSRF).", status_code=403)
        return None

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError) -> Response:
        return Response(MALFORMED, status_code=400)

    if telegram_webhook is not None and cfg.telegram.webhook_secret is not None:
        expected = cfg.telegram.webhook_secret.get_secret_value()

        @app.post("/telegram/webhook", response_model=None)
        async def telegram_update(request: Request) -> Response:
            """200 only once the update is committed; otherwise Telegram delivers it again."""
            given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return Response(status_code=403)
            try:
                data = await request.json()
            except ValueError:
                return Response("not JSON", status_code=400)
            if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
                return Response("not an update", status_code=400)
            done = await telegram_webhook(data)
            return Response(status_code=200 if done else 503)

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/") -> HTMLResponse:
        request.session.setdefault("csrf", new_token())
        return page(request, "login", next=local_path(next), error=None)

    @app.post("/login", response_model=None)
    def login(
        request: Request,
        name: str = Form(...),
        password: str = Form(...),
        csrf: str = Form(""),
        next: str = Form("/"),
    ) -> Response:
        if not same_token(request.session.get("csrf"), csrf):
            return page(
                request, "login", 403, next="/", error="Sitzung abgelaufen, bitte erneut anmelden."
            )
        target = local_path(next)
        wrong = "Name oder Passwort falsch."
        if len(name) > MAX_NAME:  # no such account can exist
            return page(request, "login", 401, next=target, error=wrong)
        peer = request.client.host if request.client else "?"
        key = (name, peer)
        # Per address, and per account from anywhere: new addresses buy no more guesses.
        if limiter.blocked(key) or account_limiter.blocked(name):
            return page(
                request,
                "login",
                429,
                next=target,
                error="Zu viele Fehlversuche. Bitte später erneut versuchen.",
            )
        # A few argon2 checks at a time (19 MiB each): a flood of logins waits, then is refused.
        if not hashing.acquire(timeout=cfg.web.login_wait_seconds):
            log.warning("login for %r from %s refused: password checks busy", name, peer)
            return page(
                request,
                "login",
                503,
                next=target,
                error="Anmeldung gerade überlastet. Bitte gleich erneut versuchen.",
            )
        try:
            with sessions.begin() as session:  # a login may upgrade an old password hash
                ok = check_login(session, name, password)
                version = session_version(session, name) if ok else None
        finally:
            hashing.release()
        if version is None:
            limiter.failed(key)
            account_limiter.failed(name)
            log.info("failed login for %r from %s", name, peer)
            return page(request, "login", 401, next=target, error=wrong)
        limiter.succeeded(key)  # the account's count runs out with the window
        request.session.clear()  # a new session on login: nothing from before carries over
        request.session.update(staff=name, version=version, csrf=new_token())
        return RedirectResponse(target, status_code=303)

    @app.post("/logout", response_model=None)
    def logout(request: Request, csrf: str = Form("")) -> Response:
        if same_token(request.session.get("csrf"), csrf):
            name, version = request.session.get("staff"), request.session.get("version")
            if isinstance(name, str) and isinstance(version, int):
                with sessions.begin() as session:  # ends copies of this cookie too
                    end_sessions(session, name, version)
            request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/", response_class=HTMLResponse, response_model=None)
    def review_queue(
        request: Request,
        priority: str = Query("", max_length=16),
        customer: str = Query("", max_length=64),
        status: str = Query("", max_length=16),
        page_number: int = Query(1, ge=1, le=MAX_PAGE),
    ) -> Response:
        if (redirect := login_first(request)) is not None:
            return redirect
        if (
            (priority and priority not in PRIORITIES)
            or (status and status not in STATUSES)
            or not plain_text(customer)
        ):
            return Response(MALFORMED, status_code=400)
        flt = queries.QueueFilter(priority or None, customer or None, status or None, page_number)
        with sessions() as session:
            rows, total = queries.queue(session, cfg, calendars, flt, clock())
            pages = max(1, -(-total // cfg.web.page_size))
            return page(
                request,
                "queue",
                rows=rows,
                total=total,
                flt=flt,
                pages=pages,
                priorities=[p.value for p in Priority],
            )

    @app.get("/tickets/{number}", response_class=HTMLResponse, response_model=None)
    def ticket_page(
        request: Request, number: str, done: str | None = Query(None, max_length=8)
    ) -> Response:
        if (redirect := login_first(request)) is not None:
            return redirect
        if not plausible_number(number):
            return page(request, "missing", 404, number=number[:MAX_NUMBER])
        with sessions() as session:
            detail = queries.ticket_detail(session, number)
            if detail is None:
                return page(request, "missing", 404, number=number)
            entitlement = None
            contract = detail.ticket.contract
            if contract is not None:
                view = next(
                    v
                    for v in store.contract_views(session, contract.customer_id)
                    if v.id == contract.id
                )
                entitlement = store.entitlement(
                    session, view, clock().astimezone(cfg.zone).date(), lock=False
                )
            share, state = queries.time_used(calendars, detail.ticket, clock())
            return page(
                request,
                "ticket",
                d=detail,
                entitlement=entitlement,
                share=share,
                state=state,
                priorities=[p.value for p in Priority],
                reasons=REASONS,
                done=done,
                catalogue=cfg.catalogue,
                service_reasons=SERVICE_REASONS,
                service_names={e.id: e.name for e in cfg.catalogue},
                model_label=ContractModel(contract.model).label if contract else "–",
            )

    def refuse_correction(
        request: Request, csrf: str, number: str, reason: str, note: str
    ) -> Response | None:
        """A correction form needs a login, its token, a plausible ticket and plain text."""
        if (refused := refuse_form(request, csrf)) is not None:
            return refused
        if not plausible_number(number):
            return Response("Unbekanntes Ticket.", status_code=404)
        if not (plain_text(reason) and plain_text(note, lines=True)):
            return Response(MALFORMED, status_code=400)
        return None

    @app.post("/tickets/{number}/priority", response_model=None)
    def correct(
        request: Request,
        number: str,
        priority: str = Form(...),
        reason: str = Form(...),
        note: str = Form(""),
        notify: str = Form(""),
        csrf: str = Form(""),
    ) -> Response:
        if (refused := refuse_correction(request, csrf, number, reason, note)) is not None:
            return refused
        try:
            chosen = Priority(priority)
        except ValueError:
            return Response("Unbekannte Priorität.", status_code=400)
        why = because(reason, note)
        try:
            with sessions.begin() as session:
                correct_priority(
                    session, cfg, number, chosen, request.session["staff"], why, clock()
                )
                if notify:
                    notify_priority(session, cfg, number, clock())
        except StaffActionRefused as exc:
            return Response(str(exc), status_code=404)
        return RedirectResponse(f"/tickets/{number}?done=1", status_code=303)

    @app.post("/tickets/{number}/service", response_model=None)
    def correct_the_service(
        request: Request,
        number: str,
        service: str = Form(...),
        reason: str = Form(...),
        note: str = Form(""),
        csrf: str = Form(""),
    ) -> Response:
        """Staff choose the Leistungskatalog service; a points ticket is re-priced."""
        if (refused := refuse_correction(request, csrf, number, reason, note)) is not None:
            return refused
        if cfg.service(service) is None:
            return Response("Unbekannte Leistung.", status_code=400)
        why = because(reason, note)
        try:
            with sessions.begin() as session:
                correct_service(
                    session, cfg, number, service, request.session["staff"], why, clock()
                )
        except StaffActionRefused as exc:
            return Response(str(exc), status_code=404)
        return RedirectResponse(f"/tickets/{number}?done=service", status_code=303)

    @app.post("/tickets/{number}/held", response_model=None)
    def decide_held(
        request: Request,
        number: str,
        action: str = Form(...),
        reason: str = Form(""),
        customer: str = Form(""),
        csrf: str = Form(""),
    ) -> Response:
        """Accept, reject (with a templated answer) or assign a held request."""
        if (refused := refuse_form(request, csrf)) is not None:
            return refused
        if not plausible_number(number):
            return Response("Unbekanntes Ticket.", status_code=404)
        if not (plain_text(reason, lines=True) and plain_text(customer)):
            return Response(MALFORMED, status_code=400)
        staff = request.session["staff"]
        try:
            with sessions.begin() as session:
                if action == "accept":
                    accept_held(session, cfg, number, staff, clock())
                elif action == "reject":
                    reject_held(session, cfg, number, staff, reason.strip(), clock())
                elif action == "assign":
                    assign_held(session, cfg, number, customer.strip(), staff, clock())
                else:
                    return Response("Unbekannte Aktion.", status_code=400)
        except StaffActionRefused as exc:
            return Response(str(exc), status_code=409)
        return RedirectResponse(f"/tickets/{number}?done=1", status_code=303)

    def quality_view(request: Request, trained: Any = None) -> HTMLResponse:
        with sessions() as session:
            versions, weeks = queries.quality(session)
        from classifier.registry import ModelRegistry

        registry = ModelRegistry(cfg.classifier.models_dir)
        return page(
            request,
            "quality",
            versions=versions,
            weeks=weeks,
            labels=[p.value for p in Priority],
            trained=trained,
            models=registry.versions(),
            active=registry.active_version(),
        )

    @app.get("/quality", response_class=HTMLResponse, response_model=None)
    def quality_page(request: Request) -> Response:
        if (redirect := login_first(request)) is not None:
            return redirect
        return quality_view(request)

    @app.post("/quality/train", response_model=None)
    def train_and_compare(request: Request, csrf: str = Form("")) -> Response:
        """Train on the corpus plus staff decisions; the gate of `intake train` decides."""
        if (refused := refuse_form(request, csrf)) is not None:
            return refused
        with sessions() as session:
            corrections = training_corrections(session)
        from classifier.train import train_version  # scikit-learn is loaded only to train

        result = train_version(cfg.classifier.corpus_dir, cfg.classifier.models_dir, corrections)
        log.info("staff %s trained %s: %s", request.session["staff"], result.version, result.reason)
        return quality_view(request, trained=result)

    return app


def because(reason: str, note: str) -> str:
    """What staff gave as the reason of a correction: the chosen reason and their note."""
    return f"{reason}: {note.strip()}" if note.strip() else reason
