"""A local SMTP server for the tests (aiosmtpd, real SMTP on 127.0.0.1), keeping what it receives.

with Mailbox() as mailbox:
    settings.smtp_url = mailbox.url
    ...
    [mail] = mailbox.wait_for(1)
    assert mail["Subject"].startswith("舆情")
"""

from __future__ import annotations

import email
import threading
import time
from email.message import Message
from email.policy import default
from typing import Any

from tests.services import free_port


class Mailbox:
    """``tls``: (certificate file, key file) offered through STARTTLS, or from the first byte
    (SMTPS) when ``implicit``."""

    def __init__(self, tls: tuple[str, str] | None = None, implicit: bool = False) -> None:
        self.tls, self.implicit = tls, implicit
        self.port = free_port()
        self.mails: list[Message] = []
        self.recipients: list[list[str]] = []
        self._lock = threading.Lock()
        self._controller: Any = None

    @property
    def url(self) -> str:
        return f"{'smtps' if self.implicit else 'smtp'}://127.0.0.1:{self.port}"

    def __enter__(self) -> Mailbox:
        from aiosmtpd.controller import Controller

        box = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                message = email.message_from_bytes(envelope.content, policy=default)
                with box._lock:
                    box.mails.append(message)
                    box.recipients.append(list(envelope.rcpt_tos))
                return "250 Message accepted for delivery"

        options: dict[str, Any] = {}
        if self.tls is not None:
            import ssl

            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls)
            options = (
                {"ssl_context": context}
                if self.implicit
                else {"tls_context": context, "require_starttls": True}
            )
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **options)
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._controller is not None:
            self._controller.stop()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.mails) >= count:
                    return list(self.mails)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} mails, got {len(self.mails)}")
