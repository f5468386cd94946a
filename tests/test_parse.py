"""Parsing mail: readable text, machine detection, and nothing ever escapes as an exception."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from intake.mail.parse import parse_email
from tests.support.factories import make_mail

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def test_an_encoded_german_subject_and_body_are_decoded() -> None:
    raw = (
        b"From: =?iso-8859-1?q?J=F6rg_M=FCller?= <JM@Firma.example>\r\n"
        b"To: support@example.com\r\n"
        b"Subject: =?iso-8859-1?q?St=F6rung_im_B=FCro?=\r\n"
        b"Message-ID: <a1@firma.example>\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        b"Gr\xfc\xdfe aus dem B\xfcro\r\n"
    )
    msg = parse_email(raw, NOW)
    assert msg.subject == "Störung im Büro"
    assert msg.sender == "jm@firma.example" and msg.sender_name == "Jörg Müller"
    assert msg.body == "Grüße aus dem Büro"
    assert msg.message_id == "<a1@firma.example>" and msg.raw == raw
    assert not msg.automatic_reasons and msg.parse_error is None


def test_an_html_only_mail_becomes_readable_text_without_scripts() -> None:
    raw = (
        b"From: a@b.example\r\nSubject: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><style>p{}</style></head><body><p>Das Kundenportal&nbsp;l\xc3\xa4dt nicht.</p>"
        b"<script>alert(1)</script><p>Gru&szlig;</p></body></html>"
    )
    body = parse_email(raw, NOW).body
    assert "Kundenportal" in body and "lädt nicht" in body and "Gruß" in body
    assert "alert" not in body and "<p>" not in body


def test_a_subject_with_line_breaks_is_folded_into_one_line() -> None:
    msg = parse_email(
        b"From: a@b.example\r\nSubject: Hilfe\r\n Bcc: x@evil.example\r\n\r\nText\r\n", NOW
    )
    assert "\n" not in msg.subject and "\r" not in msg.subject


def test_machine_mail_is_recognised_by_its_headers() -> None:
    cases = {
        "Auto-Submitted": "auto-replied",
        "Precedence": "bulk",
        "X-Autoreply": "yes",
        "List-Id": "<otrs-users.example>",
        "X-Loop": "support@example.com",
    }
    for header, value in cases.items():
        msg = parse_email(make_mail(headers={header: value}), NOW)
        assert msg.automatic_reasons, header
    assert parse_email(make_mail(headers={"Auto-Submitted": "no"}), NOW).automatic_reasons == ()
    assert parse_email(make_mail(sender="MAILER-DAEMON@mx.example"), NOW).automatic_reasons
    assert parse_email(make_mail(), NOW, envelope_from="").automatic_reasons


def test_a_mail_without_message_id_gets_a_stable_content_key() -> None:
    raw = b"From: a@b.example\r\nSubject: x\r\n\r\nText\r\n"
    assert parse_email(raw, NOW).dedupe_key == parse_email(raw, NOW).dedupe_key
    assert parse_email(raw, NOW).dedupe_key.startswith("sha256:")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise_and_are_kept(raw: bytes) -> None:
    msg = parse_email(raw, NOW, envelope_from="x@y.example")
    assert msg.raw == raw


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b'Content-Type: multipart/mixed; boundary="b"\r\n',
                b"--b\r\n",
                b"--b--\r\n",
                b"Content-Transfer-Encoding: base64\r\n",
                b'Content-Type: text/plain; charset="x-unknown"\r\n',
                b"Subject: =?utf-8?q?=E2=28?=\r\n",
                b"Subject: =?bogus?B?!!!?=\r\n",
                b"From: <>\r\n",
                b"Content-Type: text/html\r\n",
                b"\r\n",
                b"\xff\xfe\x00",
                b"=?utf-7?B?K2ZmZg==?=\r\n",
                b'From: "Broken <a@b\r\n',
                b"Message-ID: <<>>\r\n",
                b"QmFzZTY0IGJvZHk=\r\n",
            ]
        ),
        max_size=30,
    )
)
def test_mutated_mime_never_raises(parts: list[bytes]) -> None:
    raw = b"".join(parts)
    msg = parse_email(raw, NOW)
    assert msg.raw == raw


def test_attachments_keep_name_and_type_also_nested_encoded_and_winmail() -> None:
    from email.message import EmailMessage

    inner = EmailMessage()
    inner["From"] = "daemon@x.example"
    inner["Subject"] = "Fehler"
    inner.set_content("Daemon gestoppt")
    msg = EmailMessage()
    msg["From"] = "it@muster.example"
    msg["Subject"] = "Logs"
    msg.set_content("Anbei die Logs.")
    msg.add_attachment(
        b"%PDF-1.4", maintype="application", subtype="pdf", filename="Übersicht März.pdf"
    )
    msg.add_attachment(
        b"\x78\x9f\x3e\x22", maintype="application", subtype="ms-tnef", filename="winmail.dat"
    )
    msg.add_attachment(inner)
    parsed = parse_email(msg.as_bytes(), NOW)
    files = {(a.filename, a.content_type) for a in parsed.attachments}
    assert ("Übersicht März.pdf", "application/pdf") in files  # RFC 2231 encoded name
    assert ("winmail.dat", "application/ms-tnef") in files
    assert ("weitergeleitet.eml", "message/rfc822") in files
    assert parsed.body == "Anbei die Logs."


def test_undeclared_8bit_headers_are_read_as_utf8_or_windows_1252() -> None:
    latin = b"From: J\xf6rg <j@x.example>\r\nSubject: St\xf6rung im B\xfcro\r\n\r\nText\r\n"
    utf8 = "From: a@b.example\r\nSubject: Störung – dringend\r\n\r\nText\r\n".encode()
    assert parse_email(latin, NOW).subject == "Störung im Büro"
    assert parse_email(latin, NOW).sender_name == "Jörg"
    assert parse_email(utf8, NOW).subject == "Störung – dringend"


def test_a_utf7_body_from_exchange_is_decoded() -> None:
    raw = b"From: a@b.example\r\nSubject: x\r\nContent-Type: text/plain; charset=utf-7\r\n\r\nSt+APY-rung\r\n"
    assert parse_email(raw, NOW).body == "Störung"
