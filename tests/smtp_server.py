"""A real SMTP server on 127.0.0.1 for the email channel's tests: ``aiosmtpd`` in a thread.

It records every message it accepted (the parsed email) and can be told to refuse a
recipient (``refuse``: an SMTP code and text for RCPT), to answer DATA with a code
(``data_answer``), to drop the connection after the message's data arrived and before
answering (``drop``: how many transfers to drop), or to take ``delay`` seconds per
message. ``tls`` (a server context) offers STARTTLS and requires it and AUTH (``users``:
name -> password).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import subprocess
import threading
from collections import Counter
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Recorder:
    """The handler: records what was accepted; scripted faults."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse: tuple[int, str] | None = None
        self.data_answer: str | None = None
        self.drop = 0
        self.dropped = 0
        self.delay = 0.0
        """Seconds each accepted message takes before its answer."""
        self.logins: list[str] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if self.refuse is not None:
            return f"{self.refuse[0]} {self.refuse[1]}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            if self.drop > 0:
                self.drop -= 1
                self.dropped += 1
                server.transport.close()  # the data arrived; no answer ever comes
                return "250 never seen"
            if self.data_answer is not None:
                return self.data_answer
            parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            self.messages.append(parsed)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"

    def message_ids(self) -> Counter[str]:
        with self.lock:
            return Counter(str(m["Message-ID"]) for m in self.messages)


class _Controller(Controller):
    """aiosmtpd's Controller, listening on a free port when given port 0."""

    def _trigger_server(self) -> None:
        if self.port == 0:
            server: Any = self.server
            self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class SmtpServer:
    """``with SmtpServer() as smtp:`` a running server; ``smtp.port``, ``smtp.recorder``."""

    def __init__(self, *, tls: ssl.SSLContext | None = None,
                 users: dict[str, str] | None = None) -> None:
        self.recorder = Recorder()
        self.users = users or {}
        kwargs: dict[str, Any] = {}
        if tls is not None:
            kwargs.update(tls_context=tls, require_starttls=True, auth_required=True,
                          authenticator=self._authenticate)
        self.controller = _Controller(self.recorder, hostname="127.0.0.1", port=0,
                                      ready_timeout=20, **kwargs)

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            name = auth_data.login.decode()
            if self.users.get(name) == auth_data.password.decode():
                self.recorder.logins.append(name)
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def self_signed(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context with a new self-signed certificate for 127.0.0.1, and the
    certificate's file (the client's ``cafile``)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, cert
