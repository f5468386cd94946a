"""Sender authentication (intake/mail/senderauth.py) against DKIM keys, SPF and DMARC records
served by a DNS server on loopback, and Authentication-Results headers forged as an attacker
would write them."""

from __future__ import annotations

from pathlib import Path

import pytest

from intake.config import Config
from intake.domain import AuthMode, AuthResult, SenderAuth
from intake.mail.senderauth import SenderVerifier, org_domain
from tests.support.config import make_config
from tests.support.dns import DkimKey, LocalDns
from tests.support.factories import make_mail

CUSTOMER = "it@muster.example"
PEER = "127.0.0.1:40000"


@pytest.fixture(autouse=True)
def records(dns: LocalDns) -> None:
    """muster.example sends from 192.0.2.10 and asks receivers to reject what fails DMARC."""
    dns.publish("muster.example", "v=spf1 ip4:192.0.2.10 -all")
    dns.publish("_dmarc.muster.example", "v=DMARC1; p=reject")


def config(tmp_path: Path, dns: LocalDns, **env: str) -> Config:
    return make_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'unused.db'}",
        INTAKE_MAIL__DNS_SERVERS=dns.address,
        INTAKE_MAIL__DNS_TIMEOUT_SECONDS="1",
        **env,
    )


def check(cfg: Config, raw: bytes, envelope: str = CUSTOMER, peer: str | None = PEER) -> SenderAuth:
    auth = SenderVerifier(cfg.mail).check(raw, CUSTOMER, envelope, peer)
    assert auth is not None
    return auth


def test_a_good_dkim_signature_of_the_from_domain_passes(
    tmp_path: Path, dns: LocalDns, key: DkimKey
) -> None:
    auth = check(config(tmp_path, dns), key.sign(make_mail(sender=CUSTOMER)))
    assert auth.result is AuthResult.PASS
    assert any("dkim=pass (muster.example)" in r for r in auth.reasons)
    assert auth.holds(AuthMode.ENFORCE) is False


def test_a_changed_body_breaks_the_signature_and_fails(
    tmp_path: Path, dns: LocalDns, key: DkimKey
) -> None:
    signed = key.sign(make_mail(sender=CUSTOMER, body="Bitte Passwort neu setzen."))
    forged = signed.replace(b"neu setzen", b"an IBAN DE00 senden")
    assert forged != signed
    auth = check(config(tmp_path, dns), forged)
    assert auth.result is AuthResult.FAIL
    assert auth.holds(AuthMode.REPORT)


def test_a_forged_from_without_signature_fails_where_the_domain_publishes_dmarc(
    tmp_path: Path, dns: LocalDns
) -> None:
    # The attacker's own envelope sender and address: nothing aligns with muster.example.
    auth = check(
        config(tmp_path, dns),
        make_mail(sender=CUSTOMER),
        envelope="bounce@evil.example",
        peer="203.0.113.5:4000",
    )
    assert auth.result is AuthResult.FAIL
    assert any("dmarc=fail" in r for r in auth.reasons)


def test_a_signature_of_another_domain_does_not_confirm_the_from(
    tmp_path: Path, dns: LocalDns
) -> None:
    evil = DkimKey("evil.example")
    dns.publish(evil.name, evil.record)
    auth = check(
        config(tmp_path, dns),
        evil.sign(make_mail(sender=CUSTOMER)),
        envelope="x@evil.example",
        peer="203.0.113.5:4000",
    )
    assert auth.result is AuthResult.FAIL  # dkim=pass for evil.example, not aligned


def test_spf_of_an_aligned_envelope_sender_passes_and_a_wrong_address_fails(
    tmp_path: Path, dns: LocalDns
) -> None:
    cfg = config(tmp_path, dns)
    raw = make_mail(sender=CUSTOMER)
    assert check(cfg, raw, peer="192.0.2.10:25").result is AuthResult.PASS
    spoofed = check(cfg, raw, peer="198.51.100.7:25")
    assert spoofed.result is AuthResult.FAIL
    assert any(r.startswith("spf=fail") for r in spoofed.reasons)


def test_without_records_the_sender_is_unconfirmed_not_failed(
    tmp_path: Path, dns: LocalDns
) -> None:
    raw = make_mail(sender="max@nirgends.example")
    auth = SenderVerifier(config(tmp_path, dns).mail).check(
        raw, "max@nirgends.example", "max@nirgends.example", PEER
    )
    assert auth is not None and auth.result is AuthResult.NONE
    assert auth.holds(AuthMode.REPORT) is False
    assert auth.holds(AuthMode.ENFORCE) is True


def test_a_dns_timeout_is_temperror_and_never_a_pass(
    tmp_path: Path, dns: LocalDns, key: DkimKey
) -> None:
    cfg = config(tmp_path, dns)
    signed = key.sign(make_mail(sender=CUSTOMER))
    dns.stop()  # the signature is good, but nobody can tell
    auth = check(cfg, signed, peer="192.0.2.10:25")
    assert auth.result is AuthResult.NONE
    assert any("temperror" in r for r in auth.reasons)


def ar(authserv_id: str, results: str) -> str:
    return f"{authserv_id}; {results}"


def with_headers(raw: bytes, *headers: tuple[str, str]) -> bytes:
    """`raw` with `headers` on top, in order (the first is the topmost)."""
    top = b"".join(f"{name}: {value}\r\n".encode() for name, value in headers)
    return top + raw


def test_the_topmost_trusted_header_decides_and_a_spoofed_lower_one_is_ignored(
    tmp_path: Path, dns: LocalDns
) -> None:
    cfg = config(tmp_path, dns, INTAKE_MAIL__TRUSTED_AUTHSERV_IDS="mx.support.example")
    raw = with_headers(
        make_mail(sender=CUSTOMER),
        (
            "Authentication-Results",
            ar("mx.support.example", "dmarc=fail header.from=muster.example"),
        ),
        # Written by the sender, below the front MTA's own header.
        (
            "Authentication-Results",
            ar("mx.support.example", "dmarc=pass header.from=muster.example"),
        ),
    )
    auth = check(cfg, raw)
    assert auth.result is AuthResult.FAIL
    assert auth.reasons[0] == "Authentication-Results von mx.support.example"


def test_a_header_of_an_untrusted_server_counts_for_nothing(tmp_path: Path, dns: LocalDns) -> None:
    cfg = config(tmp_path, dns, INTAKE_MAIL__TRUSTED_AUTHSERV_IDS="mx.support.example")
    raw = with_headers(
        make_mail(sender=CUSTOMER),
        ("Authentication-Results", ar("mx.evil.example", "dmarc=pass header.from=muster.example")),
        ("Authentication-Results", ar("mx.evil.example", "dkim=pass header.d=muster.example")),
    )
    auth = check(cfg, raw, envelope="x@evil.example", peer="203.0.113.5:25")
    assert auth.result is AuthResult.FAIL  # checked here: DMARC policy, nothing aligned
    assert auth.reasons[0] == "selbst geprüft"


def test_a_trusted_pass_needs_no_dns(tmp_path: Path, dns: LocalDns) -> None:
    cfg = config(tmp_path, dns, INTAKE_MAIL__TRUSTED_AUTHSERV_IDS="mx.support.example")
    dns.stop()
    raw = with_headers(
        make_mail(sender=CUSTOMER),
        (
            "Authentication-Results",
            ar(
                "mx.support.example",
                "spf=pass smtp.mailfrom=it@muster.example;\r\n dkim=pass header.d=muster.example",
            ),
        ),
    )
    assert check(cfg, raw).result is AuthResult.PASS


def test_a_trusted_dkim_pass_of_another_domain_is_not_aligned(
    tmp_path: Path, dns: LocalDns
) -> None:
    cfg = config(tmp_path, dns, INTAKE_MAIL__TRUSTED_AUTHSERV_IDS="mx.support.example")
    raw = with_headers(
        make_mail(sender=CUSTOMER),
        ("Authentication-Results", ar("mx.support.example", "dkim=pass header.d=evil.example")),
    )
    assert check(cfg, raw).result is AuthResult.NONE


def test_off_checks_nothing(tmp_path: Path, dns: LocalDns) -> None:
    cfg = config(tmp_path, dns, INTAKE_MAIL__SENDER_AUTH="off")
    assert SenderVerifier(cfg.mail).check(make_mail(), CUSTOMER, CUSTOMER, PEER) is None


@pytest.mark.parametrize(
    ("domain", "organisation"),
    [
        ("muster.example", "muster.example"),
        ("mail.muster.example", "muster.example"),
        ("a.b.kunde.co.uk", "kunde.co.uk"),
        ("x.kunde.de", "kunde.de"),
        ("victim.github.io", "victim.github.io"),
    ],
)
def test_organisational_domains(domain: str, organisation: str) -> None:
    assert org_domain(domain) == organisation


def test_hostile_authentication_headers_never_crash_and_never_pass(
    tmp_path: Path, dns: LocalDns
) -> None:
    cfg = config(tmp_path, dns, INTAKE_MAIL__TRUSTED_AUTHSERV_IDS="mx.support.example")
    junk = [
        ("Authentication-Results", "mx.support.example; dkim=pass header.d=" + "a" * 5000),
        ("Authentication-Results", ";;; ==="),
        ("Authentication-Results", "\x1b[31mmx.support.example; dmarc=pass"),
        ("DKIM-Signature", "v=1; a=rsa-sha256; d=muster.example; s=" + "x" * 600 + "; b=!!"),
        ("DKIM-Signature", "garbage"),
        *[("DKIM-Signature", f"v=1; d=muster.example; s=s{i}; b=AAAA") for i in range(50)],
    ]
    auth = check(cfg, with_headers(make_mail(sender=CUSTOMER), *junk), envelope="x@evil.example")
    assert auth.result is not AuthResult.PASS
    assert sum(r.startswith("dkim=") for r in auth.reasons) <= 5  # bounded work
    # Only the first 50 are read: a verdict below 60 headers the sender wrote is not reached.
    many = [("Authentication-Results", "mx.evil.example; none")] * 60
    late = ("Authentication-Results", "mx.support.example; dmarc=pass header.from=muster.example")
    auth = check(cfg, with_headers(make_mail(sender=CUSTOMER), *many, late))
    assert auth.result is not AuthResult.PASS
