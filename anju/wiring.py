"""Who listens to what: the one place where the domains' signals are connected to receivers in
the packages above them. Called where a process is assembled: the app factory, the worker
command, the command line, the test session. Connecting twice changes nothing."""

from __future__ import annotations


def connect() -> None:
    from channels.service import deliver_posted
    from conversations.signals import message_posted

    # A person's message (an agent's reply, a survey, a finished work order) leaves on the
    # resident's channel: channels stores its delivery in the same transaction.
    message_posted.connect(deliver_posted)
