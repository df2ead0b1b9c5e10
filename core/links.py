"""Links that act without a login: the acknowledgement link in an emergency page (escalation) and
in an opinion alert (sentiment). The link is the credential — it names one record, says until when
it is good, and carries an HMAC over both with the service's secret key:

    <record id>.<expires, Unix seconds>.<32 hex digits of HMAC-SHA256(purpose:id:expires)>

A link forwarded to a group chat or found in a phone's history a week later acknowledges nothing:
it expires ``ack_link_hours`` after it was sent (the person paged acts within minutes; later, the
console is the place). The token's shape is checked before anything is decoded or compared, so a
token of 5,000 digits or of Chinese characters is simply not found.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime, timedelta

from core.db import utcnow
from core.errors import Gone, NotFound
from core.settings import Settings

# ASCII only ([0-9], not \d, which takes any script's digits); ids and times of sane lengths.
_TOKEN_RE = re.compile(r"([0-9]{1,18})\.([0-9]{9,11})\.([0-9a-f]{32})")
INVALID = "确认链接无效"


class LinkExpired(Gone):
    default_message = "确认链接已过期"


def _mac(settings: Settings, purpose: str, record_id: int, expires: int) -> str:
    message = f"{purpose}:{record_id}:{expires}".encode()
    return hmac.new(settings.signing_key().encode(), message, hashlib.sha256).hexdigest()[:32]


def sign(settings: Settings, purpose: str, record_id: int, *, issued_at: datetime | None = None) -> str:
    """The token of a link to ``record_id``, good for ``settings.ack_link_hours`` from now."""
    expires = int(((issued_at or utcnow()) + timedelta(hours=settings.ack_link_hours)).timestamp())
    return f"{record_id}.{expires}.{_mac(settings, purpose, record_id, expires)}"


def verify(settings: Settings, purpose: str, token: str) -> int:
    """The record id a valid token names. NotFound for anything not signed by us (a forged, a
    malformed or an older-format token), LinkExpired for a genuine one past its time."""
    match = _TOKEN_RE.fullmatch(token)
    if match is None:
        raise NotFound(INVALID)
    record_id, expires = int(match.group(1)), int(match.group(2))
    if not hmac.compare_digest(_mac(settings, purpose, record_id, expires), match.group(3)):
        raise NotFound(INVALID)
    if expires < utcnow().timestamp():
        raise LinkExpired()
    return record_id
