"""The staff pages as a test client sees them: logging in and the form token."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

PASSWORD = "richtig-langes-passwort"


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
