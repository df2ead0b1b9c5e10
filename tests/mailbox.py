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
    def __init__(self) -> None:
        self.port = free_port()
        self.mails: list[Message] = []
        self.recipients: list[list[str]] = []
        self._lock = threading.Lock()
        self._controller: Any = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

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

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
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
