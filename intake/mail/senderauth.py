"""Who really sent a mail: the front MTA's Authentication-Results, else DKIM, SPF and DMARC
checked here. A `From:` is a claim; this turns it into pass, fail or none, with the reasons.

Trusted are only the `Authentication-Results` headers of the authserv-ids listed in
`mail.trusted_authserv_ids`, and of those only the topmost: RFC 8601 section 5 has the receiving
MTA add its own on top (and remove forged ones of its id); anything below came from the sender.
Without one, DKIM signatures (dkimpy), SPF of the connecting address (pyspf) and the From
domain's DMARC policy are checked through one resolver (`mail.dns_servers`). A DNS timeout is
temperror, which never makes a pass."""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from email.parser import BytesHeaderParser
from email.policy import compat32

import authres
import dkim
import dns.exception
import dns.resolver
import spf
from publicsuffix2 import PublicSuffixList

from intake.config import MailConfig
from intake.domain import AuthMode, AuthResult, SenderAuth

log = logging.getLogger("intake.senderauth")
DKIM_LOG = logging.getLogger("intake.senderauth.dkimpy")  # dkimpy logs each bad signature
DKIM_LOG.setLevel(logging.CRITICAL)  # the reasons stored with the message say it instead

HEADER_BYTES = 256 * 1024  # the header block read for Authentication-Results, at most
MAX_AR_HEADERS = 50  # Authentication-Results headers looked at, at most
MAX_SIGNATURES = 5  # DKIM signatures verified, at most (each costs a lookup and a body hash)
MIN_KEY_BITS = 1024
CHECK_TIMEOUTS = 2  # all lookups for one mail take at most this many resolver timeouts
CACHE_ENTRIES = 10_000
REASON_CHARS = 300


def org_domain(domain: str) -> str:
    """The organisational domain (RFC 7489 section 3.2): the public suffix plus one label. A
    suffix the list does not know is its last label (the list's default rule "*")."""
    domain = domain.lower().rstrip(".")
    suffix = _suffixes().get_tld(domain, strict=True) or domain.rpartition(".")[2]
    if domain == suffix or not domain.endswith("." + suffix):
        return domain
    label = domain[: -len(suffix) - 1].rpartition(".")[2]
    return f"{label}.{suffix}"


def aligned(domain: str, from_domain: str) -> bool:
    """Relaxed alignment (RFC 7489 section 3.1): the same organisational domain."""
    return bool(domain) and bool(from_domain) and org_domain(domain) == org_domain(from_domain)


_PSL: PublicSuffixList | None = None
_PSL_LOCK = threading.Lock()


def _suffixes() -> PublicSuffixList:
    global _PSL
    with _PSL_LOCK:
        if _PSL is None:
            _PSL = PublicSuffixList()  # the list shipped with the package, read once
        return _PSL


@dataclass(frozen=True)
class MethodResult:
    """One method's result (dkim, spf, dmarc) and the domain it speaks for."""

    method: str
    result: str  # pass, fail, none, temperror, permerror, softfail, neutral, policy
    domain: str = ""
    note: str = ""

    def describe(self) -> str:
        text = f"{self.method}={self.result}"
        if self.domain:
            text += f" ({self.domain})"
        if self.note:
            text += f": {self.note}"
        return text[:REASON_CHARS]


def aligned_pass(results: Sequence[MethodResult], from_domain: str) -> bool:
    """A DKIM signature or SPF check that passed for the From domain's organisation."""
    return any(
        r.method in ("dkim", "spf") and r.result == "pass" and aligned(r.domain, from_domain)
        for r in results
    )


def judge(results: Sequence[MethodResult], from_domain: str, source: str) -> SenderAuth:
    """pass: dmarc=pass, or a DKIM or SPF pass aligned with the From domain; fail: dmarc=fail or
    an aligned DKIM or SPF fail; otherwise none. A temperror never passes."""
    reasons = tuple([source, *(r.describe() for r in results)])
    dmarc = [r.result for r in results if r.method == "dmarc"]
    if "pass" in dmarc or aligned_pass(results, from_domain):
        return SenderAuth(AuthResult.PASS, reasons, from_domain)
    failed = any(
        r.method in ("dkim", "spf") and r.result == "fail" and aligned(r.domain, from_domain)
        for r in results
    )
    if "fail" in dmarc or failed:
        return SenderAuth(AuthResult.FAIL, reasons, from_domain)
    return SenderAuth(AuthResult.NONE, reasons, from_domain)


def header_block(raw: bytes) -> bytes:
    """The header section of `raw` (bounded), without the body."""
    head = raw[:HEADER_BYTES]
    match = re.search(rb"\r?\n\r?\n", head)
    return head[: match.start()] + b"\n" if match else head


def trusted_results(raw: bytes, trusted: Iterable[str]) -> tuple[str, list[MethodResult]] | None:
    """The results of the topmost Authentication-Results header of a trusted authserv-id, or
    None when there is none."""
    ids = {t.lower() for t in trusted}
    if not ids:
        return None
    headers = BytesHeaderParser(policy=compat32).parsebytes(header_block(raw))
    values = headers.get_all("Authentication-Results") or []
    for value in values[:MAX_AR_HEADERS]:
        text = re.sub(r"\r?\n[ \t]+", " ", str(value))
        try:
            parsed = authres.AuthenticationResultsHeader.parse_value(text)
        except (authres.AuthResError, ValueError, IndexError):
            continue  # not a header anyone trusted wrote
        if str(parsed.authserv_id).lower() not in ids:
            continue
        found = []
        for result in parsed.results:
            props = {f"{p.type}.{p.name}".lower(): str(p.value) for p in result.properties}
            domain = props.get("header.d") or props.get("header.from") or ""
            if result.method == "spf":
                domain = _domain_of(props.get("smtp.mailfrom", "")) or props.get("smtp.helo", "")
            found.append(MethodResult(str(result.method), str(result.result).lower(), domain))
        return str(parsed.authserv_id), found
    return None


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().strip("<>").lower()


def _peer_ip(peer: str | None) -> str | None:
    """The connecting address of an SMTP peer ("ip:port"); None for other channels."""
    if not peer:
        return None
    host = peer.rpartition(":")[0] if ":" in peer else peer
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


class SenderVerifier:
    """Authenticates the sender of one mail at a time; thread-safe, no database."""

    def __init__(self, cfg: MailConfig) -> None:
        self.mode = cfg.sender_auth
        self.trusted = tuple(cfg.trusted_authserv_ids)
        self.timeout = cfg.dns_timeout_seconds
        self._deadline = threading.local()  # per check: all its lookups end by then
        self.resolver = make_resolver(cfg.dns_servers, cfg.dns_timeout_seconds)
        # pyspf resolves through dnspython's default resolver: make it this one.
        dns.resolver.default_resolver = self.resolver

    def check(
        self, raw: bytes, from_address: str, envelope_from: str | None, peer: str | None
    ) -> SenderAuth | None:
        """The sender's authentication, or None when `mail.sender_auth` is off."""
        if self.mode is AuthMode.OFF:
            return None
        from_domain = _domain_of(from_address)
        if not from_domain:
            return SenderAuth(AuthResult.NONE, ("kein Absender im From",), "")
        try:
            found = trusted_results(raw, self.trusted)
            if found is not None:
                server, results = found
                return judge(results, from_domain, f"Authentication-Results von {server}")
            return self._verify(raw, from_domain, envelope_from, peer)
        except Exception as exc:  # a fault here must not lose the mail: it just does not pass
            log.warning("sender authentication failed: %s", exc, exc_info=True)
            reason = f"Prüfung nicht möglich: {type(exc).__name__}"
            return SenderAuth(AuthResult.NONE, (reason,), from_domain)

    def _verify(
        self, raw: bytes, from_domain: str, envelope_from: str | None, peer: str | None
    ) -> SenderAuth:
        # Bounded work: whatever a mail asks for (signatures, SPF includes), its lookups
        # together take at most CHECK_TIMEOUTS resolver timeouts; what is left is temperror.
        self._deadline.at = time.monotonic() + CHECK_TIMEOUTS * self.timeout
        results = [*self._dkim(raw)]
        spf_result = self._spf(envelope_from, peer)
        if spf_result is not None:
            results.append(spf_result)
        policy = self._dmarc_policy(from_domain)
        if policy is not None:
            # A published policy (RFC 7489 section 6.6.2): pass with an aligned pass, else fail.
            if policy.result == "policy":
                verdict = "pass" if aligned_pass(results, from_domain) else "fail"
                policy = replace(policy, result=verdict)
            results.append(policy)
        return judge(results, from_domain, "selbst geprüft")

    def _dkim(self, raw: bytes) -> list[MethodResult]:
        checker = dkim.DKIM(raw, logger=DKIM_LOG, minkey=MIN_KEY_BITS, timeout=self.timeout)
        count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
        results = []
        for index in range(min(count, MAX_SIGNATURES)):
            unanswered: list[bytes] = []  # dkimpy turns a DNS timeout into a plain False

            def lookup(
                name: bytes, timeout: float = 5, _seen: list[bytes] = unanswered
            ) -> bytes | None:
                try:
                    return self._txt_for_dkim(name)
                except dkim.DnsTimeoutError:
                    _seen.append(name)
                    raise

            try:
                ok = checker.verify(index, dnsfunc=lookup)
                result, note = ("pass" if ok else "fail"), ""
            except dkim.DKIMException as exc:
                result, note = "fail", str(exc)[:120]
            if unanswered:
                result, note = "temperror", "DNS antwortet nicht"
            domain = checker.signature_fields.get(b"d", b"").decode("ascii", "replace").lower()
            results.append(MethodResult("dkim", result, domain, note))
        return results

    def _spf(self, envelope_from: str | None, peer: str | None) -> MethodResult | None:
        ip = _peer_ip(peer)
        sender = (envelope_from or "").strip().strip("<>")
        if ip is None or "@" not in sender:
            return None  # no connecting address (IMAP) or a bounce: SPF says nothing here
        result, explanation = spf.check2(
            i=ip,
            s=sender,
            h=_domain_of(sender),
            timeout=self.timeout,
            querytime=max(self._left(), -1.0) or -1.0,  # <= 0: temperror at once
        )
        note = "" if result in ("pass", "none") else str(explanation)[:120]
        return MethodResult("spf", str(result), _domain_of(sender), note)

    def _dmarc_policy(self, from_domain: str) -> MethodResult | None:
        """The DMARC record of the From domain or of its organisational domain."""
        for domain in dict.fromkeys((from_domain, org_domain(from_domain))):
            try:
                record = self._txt(f"_dmarc.{domain}", prefix="v=DMARC1")
            except DnsError:
                return MethodResult("dmarc", "temperror", from_domain, "DNS antwortet nicht")
            if record is not None:
                tags = dict(
                    part.strip().partition("=")[::2] for part in record.split(";") if "=" in part
                )
                return MethodResult("dmarc", "policy", from_domain, f"p={tags.get('p', '?')}")
        return None

    def _txt(self, name: str, prefix: str = "") -> str | None:
        """The first TXT string of `name` (starting with `prefix`), None when there is none."""
        left = self._left()
        if left <= 0:
            raise DnsError("no time left for this mail's lookups")
        try:
            answer = self.resolver.resolve(name, "TXT", lifetime=min(left, self.timeout))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise DnsError(str(exc)) from exc
        for record in answer:
            text = b"".join(record.strings).decode("utf-8", "replace")
            if text.lower().startswith(prefix.lower()):
                return text
        return None

    def _left(self) -> float:
        """Seconds left for this check's lookups."""
        deadline = getattr(self._deadline, "at", None)
        return self.timeout if deadline is None else deadline - time.monotonic()

    def _txt_for_dkim(self, name: bytes, timeout: float = 5) -> bytes | None:
        try:
            text = self._txt(name.decode("ascii", "replace").rstrip("."))
        except DnsError as exc:
            raise dkim.DnsTimeoutError(str(exc)) from exc
        return text.encode() if text is not None else None


class DnsError(Exception):
    """The resolver did not answer (timeout, no server): temperror."""


def make_resolver(servers: Sequence[str], timeout: float) -> dns.resolver.Resolver:
    """The one resolver of the process: `servers` ("ip" or "ip:port"), else the system's."""
    if not servers:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        addresses, port = [], 53
        for server in servers:
            host, _, given = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
            addresses.append(host or server)
            port = int(given) if given else port
        resolver.nameservers = addresses
        resolver.port = port
    resolver.lifetime = timeout
    resolver.cache = dns.resolver.LRUCache(CACHE_ENTRIES)  # a storm from one domain asks once
    resolver.timeout = timeout
    return resolver
