"""Intake: every channel's messages in one conversation store."""
