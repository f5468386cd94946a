"""`intake znuny check`: log in, search, and probe every operation the hand-over uses, without
changing anything in Znuny; say in plain words what works and what does not."""

from __future__ import annotations

from dataclasses import dataclass

from intake.config import Config
from intake.znuny.client import ZnunyClient, ZnunyError, ZnunyUnavailable


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str
    detail: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        return f"{mark} {self.what}" + (f": {self.detail}" if self.detail else "")


def _probe_refused(exc: ZnunyError, operation: str) -> Finding:
    """A deliberately incomplete request: Znuny's complaint about it shows the operation is
    there; anything else says why it is not usable."""
    if exc.code.startswith(f"{operation}.") and not exc.code.endswith(("AuthFail", "AccessDenied")):
        return Finding(True, f"{operation} is available", f"(probe answered {exc.code})")
    if exc.code.endswith(("AuthFail", "AccessDenied")):
        return Finding(False, f"{operation} refused", f"the agent may not use it ({exc})")
    return Finding(False, f"{operation} is missing", f"the web service answered {exc}")


def check(cfg: Config, client: ZnunyClient) -> list[Finding]:
    names = cfg.znuny.dynamic_fields
    findings: list[Finding] = []
    try:
        client.check_login()
    except ZnunyUnavailable as exc:
        return [Finding(False, f"cannot reach {cfg.znuny.url}", str(exc))]
    except ZnunyError as exc:
        if exc.code.startswith("HTTP"):
            why = "no web service at this URL (check znuny.url and the web service's name)"
        elif exc.code.startswith("SessionCreate"):
            why = "user name or password wrong (znuny.user, INTAKE_ZNUNY__PASSWORD)"
        else:
            why = "the web service has no SessionCreate on POST /Session"
        return [Finding(False, "login failed", f"{why}: {exc}")]
    findings.append(Finding(True, f"logged in as {cfg.znuny.user}"))

    some_ticket: int | None = None
    try:
        probe = {f"DynamicField_{names.reference}": {"Equals": "intake-check-none"}, "Limit": 1}
        if client.search(probe):
            # Znuny drops a condition on a field it does not know, and finds every ticket.
            findings.append(
                Finding(
                    False,
                    f"dynamic field {names.reference} missing",
                    "a search by it found tickets it cannot hold: create it as a ticket Text "
                    "field (docs/ZNUNY.md)",
                )
            )
        else:
            findings.append(Finding(True, f"TicketSearch by the dynamic field {names.reference}"))
        found = client.search({"Limit": 1})
        some_ticket = found[0] if found else None
    except ZnunyError as exc:
        findings.append(
            Finding(
                False,
                "TicketSearch failed",
                f"{exc} (is the dynamic field {names.reference} there and valid for tickets?)",
            )
        )
    except ZnunyUnavailable as exc:
        findings.append(Finding(False, "TicketSearch failed", str(exc)))

    # Requests Znuny must refuse for what they lack: the answer proves the route and operation.
    for method, route, operation in (
        ("POST", "Ticket", "TicketCreate"),
        ("PATCH", "Ticket/0", "TicketUpdate"),
    ):
        try:
            client.call(method, route, operation, {})
            findings.append(Finding(False, f"{operation} accepted an empty request", "unexpected"))
        except ZnunyError as exc:
            findings.append(_probe_refused(exc, operation))
        except ZnunyUnavailable as exc:
            findings.append(Finding(False, f"{operation} failed", str(exc)))

    if some_ticket is None:
        findings.append(Finding(True, "TicketGet and TicketHistoryGet not tried", "no ticket yet"))
        return findings
    for operation, read in (
        ("TicketGet", lambda: client.get_ticket(some_ticket, articles=False)),
        ("TicketHistoryGet", lambda: client.history(some_ticket)),
    ):
        try:
            read()
            findings.append(Finding(True, f"{operation} of ticket {some_ticket}"))
        except (ZnunyError, ZnunyUnavailable) as exc:
            findings.append(Finding(False, f"{operation} failed", str(exc)))
    return findings
