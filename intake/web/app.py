"""create_app(): the staff pages (FastAPI + Jinja2), German, behind a login.

The pages are routers (intake/web/routes: auth, queue, ticket, quality); every staff page
depends on one login dependency (common.staff_member), every form on common.form_staff."""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.middleware.sessions import SessionMiddleware

from intake.clock import Clock, utcnow
from intake.config import Config
from intake.web.common import MALFORMED, FormRefused, LoginRequired, Web
from intake.web.routes import auth, quality, queue, ticket

log = logging.getLogger("intake.web")


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
    app.state.web = Web(cfg, sessions, clock)

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

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?{urlencode({'next': exc.target})}", status_code=303)

    @app.exception_handler(FormRefused)
    async def refused(request: Request, exc: FormRefused) -> Response:
        return Response(exc.message, status_code=exc.status_code)

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

    for router in (auth.router, queue.router, ticket.router, quality.router):
        app.include_router(router)
    return app
