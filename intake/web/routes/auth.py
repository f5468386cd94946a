"""Logging in and out."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from intake.passwords import check_login, end_sessions, session_version
from intake.web.auth import local_path, new_token, same_token
from intake.web.common import MAX_NAME, Pages

log = logging.getLogger("intake.web")
router = APIRouter()


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, w: Pages, next: str = "/") -> HTMLResponse:
    request.session.setdefault("csrf", new_token())
    return w.page(request, "login", next=local_path(next), error=None)


@router.post("/login", response_model=None)
def login(
    request: Request,
    w: Pages,
    name: str = Form(...),
    password: str = Form(...),
    csrf: str = Form(""),
    next: str = Form("/"),
) -> Response:
    target = local_path(next)
    if not same_token(request.session.get("csrf"), csrf):
        request.session.setdefault("csrf", new_token())
        return w.page(
            request, "login", 403, next=target, error="Sitzung abgelaufen, bitte erneut anmelden."
        )
    wrong = "Name oder Passwort falsch."
    if len(name) > MAX_NAME:  # no such account can exist
        return w.page(request, "login", 401, next=target, error=wrong)
    peer = request.client.host if request.client else "?"
    key = (name, peer)
    # Per address, and per account from anywhere: new addresses buy no more guesses.
    if w.limiter.blocked(key) or w.account_limiter.blocked(name):
        return w.page(
            request,
            "login",
            429,
            next=target,
            error="Zu viele Fehlversuche. Bitte später erneut versuchen.",
        )
    # A few argon2 checks at a time (19 MiB each): a flood of logins waits, then is refused.
    if not w.hashing.acquire(timeout=w.cfg.web.login_wait_seconds):
        log.warning("login for %r from %s refused: password checks busy", name, peer)
        return w.page(
            request,
            "login",
            503,
            next=target,
            error="Anmeldung gerade überlastet. Bitte gleich erneut versuchen.",
        )
    try:
        with w.sessions.begin() as session:  # a login may upgrade an old password hash
            ok = check_login(session, name, password)
            version = session_version(session, name) if ok else None
    finally:
        w.hashing.release()
    if version is None:
        w.limiter.failed(key)
        w.account_limiter.failed(name)
        log.info("failed login for %r from %s", name, peer)
        return w.page(request, "login", 401, next=target, error=wrong)
    w.limiter.succeeded(key)  # the account's count runs out with the window
    request.session.clear()  # a new session on login: nothing from before carries over
    request.session.update(staff=name, version=version, csrf=new_token())
    return RedirectResponse(target, status_code=303)


@router.post("/logout", response_model=None)
def logout(request: Request, w: Pages, csrf: str = Form("")) -> Response:
    if same_token(request.session.get("csrf"), csrf):
        name, version = request.session.get("staff"), request.session.get("version")
        if isinstance(name, str) and isinstance(version, int):
            with w.sessions.begin() as session:  # ends copies of this cookie too
                end_sessions(session, name, version)
        request.session.clear()
    return RedirectResponse("/login", status_code=303)
