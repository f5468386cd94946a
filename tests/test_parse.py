"""Parsing mail: readable text, machine detection, and nothing ever escapes as an exception."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from intake.mail.parse import parse_email
from tests.factories import make_mail

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
