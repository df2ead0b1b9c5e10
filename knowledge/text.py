"""Chinese text for retrieval: jieba with a property-management dictionary, stop words removed,
and residents' colloquial phrases mapped to the terms the standards use."""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from importlib.resources import files

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
def stop_words() -> frozenset[str]:
    text = files("knowledge").joinpath("data/stopwords.txt").read_text(encoding="utf-8")
    return frozenset(w.strip() for w in text.splitlines() if w.strip())


@lru_cache(maxsize=1)
def colloquial_map() -> list[tuple[str, str]]:
    """(phrase, standard terms), longest phrase first."""
    pairs = []
    for line in files("knowledge").joinpath("data/colloquial.tsv").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        phrase, standard = line.split("\t", 1)
        pairs.append((phrase.strip(), standard.strip()))
    return sorted(pairs, key=lambda p: -len(p[0]))


def expand_query(text: str) -> str:
    """The query with the standard term added after each colloquial phrase it contains."""
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
