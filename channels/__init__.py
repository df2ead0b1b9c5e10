"""Multi-channel intake: WeChat official account, the resident app, phone transcripts and web chat
into one conversation store (issue: multi-channel intake)."""
