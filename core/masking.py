"""Masking of personal data wherever it is shown or logged.

Kinds handled: mainland mobile numbers, resident ID-card numbers (18 and 15 digits), licence
plates (ordinary and new-energy), e-mail addresses and Chinese personal names. ``mask_text``
finds them inside free text (a resident's message, a log line); the ``mask_*`` functions
mask a value known to be of that kind (a directory field).
"""

from __future__ import annotations

import re

_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_PLATE_LETTERS = "A-HJ-NP-Z"  # plates never use I or O

# An 18-digit ID: 6-digit area, 8-digit birth date (19xx/20xx), 3-digit sequence, check digit.
_ID18 = r"[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"
_ID15 = r"[1-9]\d{5}\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}"
ID_CARD_RE = re.compile(rf"(?<![0-9A-Za-z])(?:{_ID18}|{_ID15})(?![0-9A-Za-z])")

# 11-digit mobile, optionally with +86/0086/86 and spaces or dashes as 3-4-4.
MOBILE_RE = re.compile(r"(?<![\d+])(?:(?:\+|00)?86[ -]?)?(1[3-9]\d)[ -]?(\d{4})[ -]?(\d{4})(?!\d)")

PLATE_RE = re.compile(
    rf"([{_PROVINCES}][{_PLATE_LETTERS}])[·•\s-]?([{_PLATE_LETTERS}0-9]{{4,5}}[{_PLATE_LETTERS}0-9挂学警])"
)

EMAIL_RE = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")


def mask_mobile(value: str) -> str:
    """138****5678; anything that is not a mobile number keeps only its last 4 characters."""
    digits = re.sub(r"\D", "", value)
    if len(digits) >= 11 and digits[-11] == "1":
        core = digits[-11:]
        return f"{core[:3]}****{core[-4:]}"
    if len(digits) <= 4:
        return "*" * len(digits)
    return "*" * (len(digits) - 4) + digits[-4:]


def mask_id_card(value: str) -> str:
    """110101********1234: area code and last four kept, birth date hidden."""
    v = value.strip()
    if len(v) <= 10:
        return "*" * len(v)
    return v[:6] + "*" * (len(v) - 10) + v[-4:]


def mask_plate(value: str) -> str:
    """粤B***45: province and issuing letter kept, the middle hidden, the last two kept."""
    v = re.sub(r"[·•\s-]", "", value)
    if len(v) <= 4:
        return v[:1] + "*" * (len(v) - 1)
    return v[:2] + "*" * (len(v) - 4) + v[-2:]


def mask_name(value: str) -> str:
    """张** / 欧阳** : family name kept. Latin names keep their first letter."""
    v = value.strip()
    if not v:
        return v
    if len(v) >= 4 and re.fullmatch(r"[\u4e00-\u9fff]+", v):
        return v[:2] + "*" * (len(v) - 2)  # compound family names (欧阳, 司马) are two characters
    return v[0] + "*" * max(1, len(v) - 1)


def mask_email(value: str) -> str:
    return EMAIL_RE.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", value)


def mask_text(text: str) -> str:
    """Mask every ID-card number, mobile number, plate and e-mail address found in free text."""
    if not text:
        return text
    text = ID_CARD_RE.sub(lambda m: mask_id_card(m.group(0)), text)
    text = MOBILE_RE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
    text = PLATE_RE.sub(lambda m: mask_plate(m.group(0)), text)
    return mask_email(text)
