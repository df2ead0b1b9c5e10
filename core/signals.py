"""Signals between domains: a lower package tells whoever listens, instead of importing them.

A domain declares its signals next to its service (``conversations.signals.message_posted``) and
sends typed events through them; packages higher up connect receivers once, where the process is
assembled (``anju.wiring.connect``), so the list of who listens to what is in one place. Scrapy's
``crawler.signals`` and Django's signals work this way.

Receivers run inside the sender's transaction, in the order they were connected: a receiver may
write rows that must commit or roll back with the change that caused them (an outbound delivery
for a reply). Anything that leaves the transaction (a job, a push to a live page) a receiver
registers with ``core.events.after_commit``, so it happens only once the change is committed and
never after a rollback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from core.settings import Settings

E = TypeVar("E")


class Signal(Generic[E]):
    """One kind of event; receivers are called with the session, the settings (passed down, as
    everywhere: a process may serve several configurations, as the tests do) and the event."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._receivers: list[Callable[[Session, Settings, E], None]] = []

    def connect(self, receiver: Callable[[Session, Settings, E], None]) -> None:
        """Add a receiver (once: connecting the same function again changes nothing)."""
        if receiver not in self._receivers:
            self._receivers.append(receiver)

    def disconnect(self, receiver: Callable[[Session, Settings, E], None]) -> None:
        if receiver in self._receivers:
            self._receivers.remove(receiver)

    @property
    def receivers(self) -> tuple[Callable[[Session, Settings, E], None], ...]:
        return tuple(self._receivers)

    def send(self, session: Session, settings: Settings, event: E) -> None:
        """Call every receiver now, inside the transaction: an exception rolls the change back."""
        for receiver in self._receivers:
            receiver(session, settings, event)

    def __repr__(self) -> str:
        return f"Signal({self.name!r}, {len(self._receivers)} receivers)"
