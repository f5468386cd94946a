"""A DNS server on loopback (dnslib) serving TXT records the test sets, and DKIM keys: public
DNS is out of reach here, so sender authentication is tested against records we publish."""

from __future__ import annotations

import base64
from typing import Any

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dnslib import QTYPE, RR, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from tests.support.network import free_port


class Zone(BaseResolver):  # type: ignore[misc]
    def __init__(self) -> None:
        self.records: dict[str, str] = {}

    def resolve(self, request: Any, handler: Any) -> Any:
        reply, name = request.reply(), str(request.q.qname).lower()
        txt = self.records.get(name)
        if request.q.qtype == QTYPE.TXT and txt is not None:
            chunks = [txt[i : i + 255] for i in range(0, len(txt), 255)]  # 255 bytes a string
            reply.add_answer(RR(name, QTYPE.TXT, rdata=TXT(chunks)))
        else:
            reply.header.rcode = 3  # NXDOMAIN
        return reply


class LocalDns:
    """Serves `zone.records` ({"name.": "text"}) on 127.0.0.1:<port> over UDP."""

    def __init__(self) -> None:
        self.zone = Zone()
        self.port = free_port()
        self.server = DNSServer(
            self.zone,
            port=self.port,
            address="127.0.0.1",
            logger=DNSLogger(prefix=False, logf=lambda _: None),
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def publish(self, name: str, text: str) -> None:
        self.zone.records[name.lower().rstrip(".") + "."] = text

    def start(self) -> LocalDns:
        self.server.start_thread()
        return self

    def stop(self) -> None:
        self.server.stop()


class DkimKey:
    """An RSA key for `domain` with selector `selector`; `record` is its DNS TXT text."""

    def __init__(self, domain: str, selector: str = "sel1") -> None:
        self.domain, self.selector = domain, selector
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.record = f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"

    @property
    def name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def sign(self, raw: bytes) -> bytes:
        signature: bytes = dkim.sign(
            raw,
            self.selector.encode(),
            self.domain.encode(),
            self.private_pem,
            include_headers=[b"from", b"to", b"subject", b"message-id"],
        )
        return signature + raw
