"""The staff pages as a test client sees them: logging in and the form token."""

from __future__ import annotations

import re

import httpx

PASSWORD = "richtig-langes-passwort"


def login(
    client: httpx.Client,
    password: str = PASSWORD,
    next: str = "/",
    headers: dict[str, str] | None = None,
) -> int:
    return login_response(client, password, next, headers).status_code


def login_response(
    client: httpx.Client,
    password: str = PASSWORD,
    next: str = "/",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    page = client.get("/login", headers=headers)
    return client.post(
        "/login",
        data={"name": "anna", "password": password, "csrf": csrf_of(page.text), "next": next},
        headers=headers,
    )


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)
