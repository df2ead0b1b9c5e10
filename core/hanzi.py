"""Traditional Chinese text read as simplified.

Residents in Hong Kong, Taiwan and Macau, and many mirrors of mainland news, write traditional
characters ("電梯困人", "樓道著火"). The rules, the lexicons and the tokenizer know simplified
words only, so a message in traditional script is converted character by character first. Text
with no unambiguously traditional character is left alone: 著 is 着 in "著火" but stays 著 in a
simplified "显著"."""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

# Characters the table maps that a simplified text uses in their own right.
_AMBIGUOUS = frozenset("著乾於")


@lru_cache(maxsize=1)
def _table() -> tuple[dict[int, str], frozenset[str]]:
    pairs: dict[str, str] = {}
    for line in files("core").joinpath("data/t2s.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            traditional, simplified = line.split("\t")
            pairs[traditional] = simplified
    return str.maketrans(pairs), frozenset(pairs) - _AMBIGUOUS


def simplified(text: str) -> str:
    """``text`` in simplified characters if it is written in traditional ones, else unchanged."""
    table, telling = _table()
    if telling.isdisjoint(text):
        return text
    return text.translate(table)
