"""Masking of personal data wherever it is shown or logged.

Kinds handled: mainland mobile numbers, resident ID-card numbers (18 and 15 digits), licence
plates (ordinary and new-energy), e-mail addresses and Chinese personal names. ``mask_text``
finds them inside free text (a resident's message, a log line); the ``mask_*`` functions
mask a value known to be of that kind (a directory field).

People do not type numbers the way a pattern expects: full-width digits from a Chinese input
method (１３８…), a phone split by spaces, dots or dashes (138 0013 8000, 138.0013.8000), zero-width
characters pasted in between (138\\u200b0013…), a plate in lower case (浙a12345), an ID number in
groups. ``mask_text`` therefore matches on a folded copy of the text — each character mapped to
one character (full-width and other compatibility forms to ASCII, every decimal digit to 0-9), so
positions stay the same — with separators allowed between digits, and replaces what it found in
the original text. Everything it did not find reaches the reader exactly as written.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_PLATE_LETTERS = "A-HJ-NP-Z"  # plates never use I or O

# Invisible characters people paste (or an attacker inserts) between digits.
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"
# What may stand between two digits of one number: spaces, dots, dashes (ASCII after folding, and
# the typographic ones folding leaves alone), middle dots, zero-width characters; up to 3 of them.
_SEP = rf"[\s.\-_·•・‐‑‒–—―{_ZERO_WIDTH}]{{0,3}}"


def _digits(n: int) -> str:
    """n digits, any of them separated."""
    return rf"\d(?:{_SEP}\d){{{n - 1}}}"


# An 18-digit ID: 6-digit area, 8-digit birth date (19xx/20xx), 3-digit sequence, check digit.
_ID18 = r"[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"
_ID15 = r"[1-9]\d{5}\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}"
ID_CARD_RE = re.compile(rf"(?:{_ID18}|{_ID15})", re.ASCII)
# Candidates: 15 or 18 characters of digits (the last may be X), separated or not; a candidate is
# an ID number when, separators removed, it has the shape above.
_ID_CANDIDATE_RE = re.compile(
    rf"(?=\d)(?<![0-9A-Za-z]){_digits(15)}(?:{_SEP}\d{_SEP}\d{_SEP}[\dXx])?(?![0-9A-Za-z])", re.ASCII
)

# 11-digit mobile, optionally with +86/0086/86, digits optionally separated. (The lookaheads in
# front let the scan skip most positions at once: a third of the time on a long message.)
MOBILE_RE = re.compile(
    rf"(?=[+081])(?<![\d+])(?:(?:\+|00)?86{_SEP})?1{_SEP}[3-9](?:{_SEP}\d){{9}}(?!\d)", re.ASCII
)

PLATE_RE = re.compile(
    rf"[{_PROVINCES}]{_SEP}[{_PLATE_LETTERS}][·•\s\-{_ZERO_WIDTH}]{{0,2}}"
    rf"[{_PLATE_LETTERS}0-9]{{4,5}}[{_PLATE_LETTERS}0-9挂学警]",
    re.IGNORECASE,
)

EMAIL_RE = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")


class _Fold(dict[int, str]):
    """A ``str.translate`` table that maps each character to one character: its NFKC form when
    that is one ASCII character (full-width ０-９ Ａ-Ｚ ＠ －, the ideographic space, circled and
    mathematical digits), any other decimal digit to 0-9, and everything else to itself. Filled
    as characters are met, so nothing is computed at import."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        folded = unicodedata.normalize("NFKC", char)
        if len(folded) == 1 and folded.isascii():
            target = folded
        elif unicodedata.decimal(char, None) is not None:
            target = str(unicodedata.decimal(char))
        else:
            target = char
        self[code] = target
        return target


_FOLD = _Fold()
# Characters that never fold: ASCII, CJK ideographs and the CJK punctuation block (、。《》…).
_MAY_FOLD = re.compile(r"[^\x00-\x7f\u3001-\u303f\u4e00-\u9fff]")


def fold(text: str) -> str:
    """The text with the same length, for matching: full-width and other forms as ASCII."""
    if text.isascii():
        return text
    return _MAY_FOLD.sub(lambda m: _FOLD[ord(m.group())], text)


def _sub(
    pattern: re.Pattern[str], mask: Callable[[str], str | None], text: str, folded: str
) -> tuple[str, str]:
    """Replace each match of ``pattern`` in ``folded`` by ``mask(match)`` in both texts (None:
    leave it); the original text keeps every character outside the matches."""
    out, out_folded, last = [], [], 0
    for match in pattern.finditer(folded):
        masked = mask(match.group())
        if masked is None:
            continue
        out += [text[last : match.start()], masked]
        out_folded += [folded[last : match.start()], masked]
        last = match.end()
    if not out:
        return text, folded
    out.append(text[last:])
    out_folded.append(folded[last:])
    return "".join(out), "".join(out_folded)


def mask_mobile(value: str) -> str:
    """138****5678; anything that is not a mobile number keeps only its last 4 characters."""
    digits = re.sub(r"[^0-9]", "", fold(value))
    if len(digits) >= 11 and digits[-11] == "1":
        core = digits[-11:]
        return f"{core[:3]}****{core[-4:]}"
    if len(digits) <= 4:
        return "*" * len(digits)
    return "*" * (len(digits) - 4) + digits[-4:]


def mask_id_card(value: str) -> str:
    """110101********1234: area code and last four kept, birth date hidden."""
    v = re.sub(rf"[\s.\-·•{_ZERO_WIDTH}]", "", fold(value))
    if len(v) <= 10:
        return "*" * len(v)
    return v[:6] + "*" * (len(v) - 10) + v[-4:]


def mask_plate(value: str) -> str:
    """粤B***45: province and issuing letter kept, the middle hidden, the last two kept."""
    v = re.sub(rf"[·•\s\-{_ZERO_WIDTH}]", "", fold(value)).upper()
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


def _id_card(found: str) -> str | None:
    compact = re.sub(r"[^0-9Xx]", "", found)
    return mask_id_card(compact) if ID_CARD_RE.fullmatch(compact) else None


def _mobile(found: str) -> str:
    digits = re.sub(r"[^0-9]", "", found)[-11:]
    return f"{digits[:3]}****{digits[-4:]}"


def _plate(found: str) -> str | None:
    # A lower-case "plate" is more often a word after a province's name (新apple12): a real one
    # has at least three digits after its letter.
    if found != found.upper() and sum(c.isdigit() for c in found) < 3:
        return None
    return mask_plate(found)


def mask_text(text: str) -> str:
    """Mask every ID-card number, mobile number, plate and e-mail address found in free text."""
    if not text:
        return text
    folded = fold(text)
    text, folded = _sub(_ID_CANDIDATE_RE, _id_card, text, folded)
    text, folded = _sub(MOBILE_RE, _mobile, text, folded)
    text, folded = _sub(PLATE_RE, _plate, text, folded)
    text, _ = _sub(EMAIL_RE, mask_email, text, folded)
    return text
