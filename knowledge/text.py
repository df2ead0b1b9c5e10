"""Chinese text for retrieval: jieba with a property-management dictionary, stop words removed,
and residents' colloquial phrases mapped to the terms the standards use."""

from __future__ import annotations

import re
import threading
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib.resources import files

from core.hanzi import simplified

_PUNCT = re.compile(r"^[\W_]+$")
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _tokenizer():  # type: ignore[no-untyped-def]
    """jieba's tokenizer with our dictionary, built once per process (about a second)."""
    import jieba  # deferred: loading its dictionary is the slow part

    jieba.setLogLevel(60)
    tokenizer = jieba.Tokenizer()
    with _lock:
        tokenizer.initialize()
        tokenizer.load_userdict(str(files("knowledge").joinpath("data/userdict.txt")))
    return tokenizer


@lru_cache(maxsize=1)
def tokenizer_fingerprint() -> str:
    """What the indexed side of the text depends on: the user dictionary and the stop words. An
    index built before either changed tokenised its passages differently from today's queries."""
    import hashlib

    digest = hashlib.sha256()
    for name in ("userdict.txt", "stopwords.txt"):
        digest.update(files("knowledge").joinpath(f"data/{name}").read_bytes())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=1)
def stop_words() -> frozenset[str]:
    text = files("knowledge").joinpath("data/stopwords.txt").read_text(encoding="utf-8")
    return frozenset(w.strip() for w in text.splitlines() if w.strip())


def _pairs(name: str) -> list[tuple[str, str]]:
    """The (left, right) rows of one of our tab-separated tables, longest left side first."""
    pairs = []
    for line in files("knowledge").joinpath(f"data/{name}").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            left, right = line.split("\t", 1)
            pairs.append((left.strip(), right.strip()))
    return sorted(pairs, key=lambda p: -len(p[0]))


@lru_cache(maxsize=1)
def colloquial_map() -> list[tuple[str, str]]:
    """(phrase, standard terms), longest phrase first."""
    return _pairs("colloquial.tsv")


@lru_cache(maxsize=1)
def _typos() -> tuple[re.Pattern[str], dict[str, str]]:
    meant = dict(_pairs("typos.tsv"))
    return re.compile("|".join(map(re.escape, meant))), meant


def correct_typos(text: str) -> str:
    """Homophone slips of domain words fixed ("电体不动了" → "电梯不动了"): neither jieba, the
    embeddings model nor the emergency rules know "电体". Traditional script is read as
    simplified first ("電梯困人" → "电梯困人")."""
    pattern, meant = _typos()
    return pattern.sub(lambda m: meant[m.group(0)], simplified(text))


def expand_query(text: str) -> str:
    """The query with typos corrected and the standard term added after each colloquial phrase
    it contains."""
    text = correct_typos(text)
    extra = [standard for phrase, standard in colloquial_map() if phrase in text]
    return text if not extra else text + " " + " ".join(dict.fromkeys(extra))


def tokens(text: str) -> list[str]:
    """Search terms: jieba words without stop words and punctuation, lower-cased; single Chinese
    characters kept only when they are the whole text (短 queries like "停水" stay searchable)."""
    words = [w.strip().lower() for w in _tokenizer().lcut(text)]
    stop = stop_words()
    kept = [w for w in words if w and w not in stop and not _PUNCT.match(w)]
    return [w for w in kept if len(w) > 1 or w.isascii()] or kept


_NOT_CJK_OR_WORD = re.compile(r"[^\u4e00-\u9fff0-9a-z]+")


def bigrams(text: str) -> list[str]:
    """Overlapping character pairs of the Chinese text (digits and Latin letters kept): robust to
    misspellings and words the dictionary does not know ("电悌", "物业费咋交")."""
    runs = _NOT_CJK_OR_WORD.split(text.lower())
    return [run[i : i + 2] for run in runs if run for i in range(max(len(run) - 1, 1))]


_CN_DIGITS = {char: value for value, char in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}
_CN_MULTIPLIERS = {"十": 10, "百": 100, "千": 1000, "万": 10_000}


def chinese_number(token: str) -> Decimal | None:
    """A number as residents and documents write it: 3.5, 2万, 十二, 两千, 二〇二四, 半."""
    if token == "半":
        return Decimal("0.5")
    if token[0].isdigit():  # 3.5, 2万
        token = token.replace(" ", "")
        multiplier = _CN_MULTIPLIERS.get(token[-1], 1)
        try:
            return (Decimal(token.rstrip("万千百")) * multiplier).normalize()
        except InvalidOperation:
            return None
    if len(token) > 1 and all(char in _CN_DIGITS for char in token):  # 二〇二四 read digit by digit
        return Decimal("".join(str(_CN_DIGITS[char]) for char in token))
    total = section = digit = 0
    for char in token:
        if char in _CN_DIGITS:
            digit = _CN_DIGITS[char]
        elif char == "万":
            total += (section + digit) * 10_000
            section = digit = 0
        else:
            section += (digit or 1) * _CN_MULTIPLIERS[char]
            digit = 0
    return Decimal(total + section + digit)
