"""Three-class Chinese sentiment (neg / neu / pos) for posts about a property company.

A softmax regression over sparse features of one post:
- jieba words (with this domain's words kept whole), word pairs and character pairs;
- the lexicon (sentiment.lexicon) read with its modifiers: a negator within three words turns a
  polar word around (没有乱收费), degree words scale it (非常满意), and the clause after 但是 /
  结果 counts on its own, since it usually decides;
- cues: sarcasm (呵呵, 🙂, praise in quotes next to a complaint), notices (通知, 届时, 敬请谅解),
  information questions against rhetorical ones (凭什么, 干什么用的).

It is trained on sentiment/data/train.jsonl, our own labelled posts, and never on the evaluation
sets under tests/data/; the trained weights ship beside it (``python -m sentiment.model`` rewrites
them), and a process trains its own only when they are stale. ``score`` is
P(pos) - P(neg), in [-1, 1].
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import numpy as np

from core.hanzi import simplified
from sentiment import lexicon

log = logging.getLogger(__name__)

CLASSES = ("neg", "neu", "pos")
L2 = 0.1  # chosen by 5-fold cross-validation on the training set (bench/sentiment_cv.py, 2026-12-07)
NEGATION_WINDOW = 3  # words after a negator that it still turns around
NGRAM_WEIGHTS = {"w:": 2.0, "b:": 1.5, "c:": 1.5}  # unit-length groups, scaled
_CLAUSE = re.compile(r"[，,。！!？?；;\n]")
_CJK_OR_WORD = re.compile(r"[\u4e00-\u9fff]|[a-z0-9]+", re.I)


def _any_of(words: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)))


_SARCASM = _any_of(lexicon.SARCASM)
_NOTICE = _any_of(lexicon.NOTICE)
_RHETORICAL = _any_of(lexicon.RHETORICAL)
_QUESTION = _any_of(lexicon.QUESTION)
_REPLY = _any_of(lexicon.REPLY)
_REPORT_STRONG = _any_of(lexicon.REPORT_STRONG)
_REPORT_WEAK = _any_of(lexicon.REPORT_WEAK)
_FIRST_PERSON = re.compile(lexicon.FIRST_PERSON)
_QUOTED_SPAN = re.compile(r"[“「『][^”」』]*[”」』]")
_POLITE = re.compile("|".join(f"(?:{p})" for p in lexicon.POLITE))
_RESTATED = re.compile(lexicon.RESTATED)
_PETITION = [re.compile(p) for p in lexicon.PETITION]
_QUOTE_MARKS = frozenset("“”「」『』")
_REPLY_OPENINGS = frozenset(lexicon.REPLY_OPENINGS)
_REPORTING = frozenset(
    ("说", "表示", "称", "抱怨", "抱怨道", "告诉", "反映", "认为", "介绍", "坦言", "直言", "无奈地")
)
# "说" is reported speech after someone else ("业主说", "她说"), not in the writer's own "我说",
# "不好说", "说实话", "怎么说".
_NOT_A_SPEAKER = frozenset(
    ("我", "我们", "咱", "咱们", "俺", "本人", "就", "再", "都", "也", "还", "不", "没", "别", "怎么",
     "可以", "所以", "好", "难", "听", "据", "跟", "和", "对", "要", "会", "能", "该")
)  # fmt: skip
_NOT_SPEECH_AFTER = frozenset(("实话", "真的", "白", "白了", "句", "一句", "不定", "明"))
_SENTENCE_ENDS = frozenset("。！？!?")


@dataclass(frozen=True)
class Sentiment:
    label: str  # neg, neu, pos
    score: float  # P(pos) - P(neg), -1 … 1
    probabilities: dict[str, float]
    negative_words: list[str] = field(default_factory=list)  # what a PR officer sees as the reason
    positive_words: list[str] = field(default_factory=list)
    cues: list[str] = field(default_factory=list)  # 反讽, 通知, 提问, 反问


_jieba_lock = threading.Lock()
_tokenizer: Any = None


def _tokenize(text: str) -> list[str]:
    global _tokenizer
    if _tokenizer is None:
        with _jieba_lock:
            if _tokenizer is None:
                import jieba

                tokenizer = jieba.Tokenizer()
                tokenizer.initialize()
                for word in lexicon.USER_WORDS:
                    tokenizer.add_word(word, freq=2000)
                _tokenizer = tokenizer
    # Without the HMM for unknown words: 20% faster, and the character pairs cover new words.
    return [t for t in _tokenizer.lcut(text, HMM=False) if t.strip()]


def _normalise(text: str) -> str:
    return simplified(" ".join((text or "").split()).lower())


@dataclass
class _Read:
    """What the lexicon sees in a post."""

    features: dict[str, float]
    negative_words: list[str]
    positive_words: list[str]
    cues: list[str]


def _reports_speech(tokens: list[str], i: int) -> bool:
    """Whether the reporting verb at ``tokens[i]`` relays someone else's words."""
    if tokens[i] != "说":
        return True
    before = tokens[i - 1] if i else ""
    after = tokens[i + 1] if i + 1 < len(tokens) else ""
    return bool(before) and before not in _NOT_A_SPEAKER and after not in _NOT_SPEECH_AFTER


def read(text: str) -> _Read:
    """The features of one post, and the words and cues behind them."""
    text = _normalise(text)
    # Courtesy is not the writer's attitude: "物业太垃圾了，谢谢" must not read as thanks, in the
    # words nor in the lexicon below.
    courteous_free = _POLITE.sub("，", text)
    tokens = _tokenize(courteous_free)
    f: dict[str, float] = {}

    def add(name: str, value: float = 1.0) -> None:
        f[name] = f.get(name, 0.0) + value

    for token in tokens:
        add("w:" + token)
    for a, b in itertools.pairwise(tokens):
        add(f"b:{a}_{b}")
    chars = _CJK_OR_WORD.findall(courteous_free)
    for a, b in itertools.pairwise(chars):
        add(f"c:{a}{b}")

    # The lexicon reads the writer's own words: not the courtesy around a complaint, nor the
    # complaint a reply restates.
    # an official reply opens and closes in its own formulas; one "联系电话" in a resident's post
    # does not make it a reply
    reply_markers = set(_REPLY.findall(text))
    # a resident who writes "下一步…联系电话" in their own voice is not replying to anyone
    own_voice = bool(_FIRST_PERSON.search(_QUOTED_SPAN.sub("", text)))
    replying = bool(reply_markers & _REPLY_OPENINGS) or (len(reply_markers) >= 2 and not own_voice)
    own = courteous_free  # courtesy is stripped, not counted (see the tokens above)
    if replying:
        restated = _RESTATED.sub("，", own)
        if restated != own:
            add("cue:restated")
            own = restated
    tokens_read = _tokenize(own) if own != courteous_free else tokens
    negative_words: list[str] = []
    positive_words: list[str] = []
    after_contrast = False
    negated_for = 0
    degree = 1.0
    quoted = reported = False  # inside “…”, or after 业主表示 / 居民抱怨道 until the sentence ends
    for i, token in enumerate(tokens_read):
        if token in _QUOTE_MARKS:
            quoted = token in "“「『"
            continue
        if token in _REPORTING and _reports_speech(tokens_read, i):
            reported = True
        if token in _SENTENCE_ENDS:
            reported = False
        if _CLAUSE.fullmatch(token):
            negated_for, degree = 0, 1.0
            continue
        if token in lexicon.CONTRAST:
            after_contrast = True
            negated_for, degree = 0, 1.0
            continue
        if token in lexicon.NEGATORS:
            negated_for = NEGATION_WINDOW
            continue
        if token in lexicon.DEGREE:
            degree = lexicon.DEGREE[token]
            continue
        polar = 1 if token in lexicon.POSITIVE else -1 if token in lexicon.NEGATIVE else 0
        if polar:
            negated = negated_for > 0
            kind = ("pos" if polar > 0 else "neg") + ("_negated" if negated else "")
            add("lex:" + kind, degree)
            if quoted or reported:  # someone else's words, as the writer relays them
                add("quoted:" + kind, degree)
            if after_contrast:
                add("after:" + kind, degree)
            (positive_words if (polar > 0) != negated else negative_words).append(
                ("不" if negated else "") + token
            )
            degree = 1.0
        negated_for = max(0, negated_for - 1)

    cues: list[str] = []
    if _SARCASM.search(text):
        add("cue:sarcasm")
        cues.append("反讽")
        if negative_words or "“" in text or '"' in text:
            add("cue:sarcasm_with_complaint")
    notices = len(set(_NOTICE.findall(text)))
    if notices:
        add("cue:notice", min(notices, 4))
        cues.append("通知")
    petitions = sum(1 for p in _PETITION if p.search(text))
    if petitions and not replying:
        add("cue:petition", min(petitions, 3))
        cues.append("诉求")
    if replying:
        add("cue:reply", min(len(reply_markers), 4))
        cues.append("答复")
    reports = len(set(_REPORT_STRONG.findall(text)))
    if reports or not own_voice:
        reports += len(set(_REPORT_WEAK.findall(text)))
    if reports:
        add("cue:report", min(reports, 3))
        cues.append("报道")
    if _RHETORICAL.search(text):
        add("cue:rhetorical")
        cues.append("反问")
    elif _QUESTION.search(text):
        add("cue:question")
        cues.append("提问")
    if "!" in text or "！" in text:
        add("cue:exclaim")
    if re.search(r"[😡🤬😤👎🙄💢]", text):
        add("cue:angry_emoji")
    if re.search(r"[👍❤️🌹💐🙏]", text):
        add("cue:warm_emoji")
    add("len:" + ("short" if len(text) < 15 else "medium" if len(text) < 60 else "long"))
    add("bias")
    return _Read(_scaled(f), negative_words, positive_words, cues)


def _scaled(features: dict[str, float]) -> dict[str, float]:
    """A 400-character letter has twenty times the word and character features of a Weibo post:
    summed raw, they drown the cues and push the model to certainty either way. Each group of
    n-gram features is scaled to unit length (times its weight), and counts of lexicon words and
    cues grow with the square root."""
    norms: dict[str, float] = {}
    for name, value in features.items():
        group = name[:2]
        if group in NGRAM_WEIGHTS:
            norms[group] = norms.get(group, 0.0) + value * value
    out = {}
    for name, value in features.items():
        group = name[:2]
        if group in NGRAM_WEIGHTS:
            out[name] = value * NGRAM_WEIGHTS[group] / (norms[group] ** 0.5)
        elif name.startswith(("lex:", "after:", "cue:", "quoted:")):
            out[name] = value**0.5 if value > 0 else value
        else:
            out[name] = value
    return out


@dataclass(frozen=True)
class SentimentModel:
    vocabulary: dict[str, int]
    weights: np.ndarray  # (features, classes)

    def probabilities_of(self, features: dict[str, float]) -> np.ndarray:
        vocabulary = self.vocabulary
        known = [(vocabulary[name], value) for name, value in features.items() if name in vocabulary]
        if known:
            indices, values = zip(*known, strict=True)
            logits = np.asarray(values) @ self.weights[list(indices)]
        else:
            logits = np.zeros(len(CLASSES))
        logits -= logits.max()
        p = np.exp(logits)
        return p / p.sum()  # type: ignore[no-any-return]

    def classify(self, text: str) -> Sentiment:
        seen = read(text)
        p = self.probabilities_of(seen.features)
        label = CLASSES[int(p.argmax())]
        return Sentiment(
            label=label,
            score=round(float(p[2] - p[0]), 4),
            probabilities={c: round(float(v), 4) for c, v in zip(CLASSES, p, strict=True)},
            negative_words=list(dict.fromkeys(seen.negative_words)),
            positive_words=list(dict.fromkeys(seen.positive_words)),
            cues=seen.cues,
        )

    def classify_many(self, texts: Iterable[str]) -> list[Sentiment]:
        return [self.classify(t) for t in texts]


def train(texts: Sequence[str], labels: Sequence[str], *, l2: float = L2) -> SentimentModel:
    """Softmax regression (L-BFGS), classes weighted by inverse frequency."""
    from scipy import sparse
    from scipy.optimize import minimize

    rows = [read(t).features for t in texts]
    vocabulary: dict[str, int] = {}
    for row in rows:
        for name in row:
            vocabulary.setdefault(name, len(vocabulary))
    data, indices, indptr = [], [], [0]
    for row in rows:
        for name, value in row.items():
            indices.append(vocabulary[name])
            data.append(value)
        indptr.append(len(indices))
    x = sparse.csr_matrix((data, indices, indptr), shape=(len(rows), len(vocabulary)), dtype=np.float64)
    y = np.array([CLASSES.index(label) for label in labels])
    n, dim, k = len(rows), len(vocabulary), len(CLASSES)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    sample_weight = (n / (k * np.maximum(counts, 1)))[y]
    onehot = np.eye(k)[y]
    total = sample_weight.sum()

    def loss(flat: np.ndarray) -> tuple[float, np.ndarray]:
        w = flat.reshape(dim, k)
        logits = x @ w
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        nll = -(sample_weight * np.log(np.maximum((p * onehot).sum(axis=1), 1e-12))).sum() / total
        grad = x.T @ ((p - onehot) * sample_weight[:, None]) / total
        value = nll + 0.5 * l2 / n * float((w * w).sum())
        return value, np.asarray(grad + l2 / n * w).ravel()

    result = minimize(loss, np.zeros(dim * k), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return SentimentModel(vocabulary, result.x.reshape(dim, k))


def training_set() -> tuple[list[str], list[str]]:
    raw = files("sentiment").joinpath("data/train.jsonl").read_text(encoding="utf-8")
    cases = [json.loads(line) for line in raw.splitlines() if line.strip()]
    return [c["text"] for c in cases], [c["label"] for c in cases]


SHIPPED = "data/model.npz"  # the model trained on train.jsonl, written by `python -m sentiment.model`


def digest() -> str:
    """What the trained model depends on: the training posts, the lexicon and this module's code
    (features, training). A shipped model with another digest is stale and is not used."""
    import hashlib

    package = files("sentiment")
    h = hashlib.sha256()
    for name in ("data/train.jsonl", "lexicon.py", "model.py"):
        h.update(package.joinpath(name).read_bytes())
    return h.hexdigest()


def _shipped() -> SentimentModel | None:
    path = files("sentiment").joinpath(SHIPPED)
    if not path.is_file():
        return None
    with path.open("rb") as fh, np.load(fh) as data:
        if str(data["digest"]) != digest():
            log.warning("the shipped sentiment model is stale (run: python -m sentiment.model); training one")
            return None
        names = [str(n) for n in data["names"]]
        return SentimentModel(
            {n: i for i, n in enumerate(names)}, np.asarray(data["weights"], dtype=np.float64)
        )


def write_shipped() -> str:
    """Train on train.jsonl and write the model beside it (a few seconds; every process then loads
    it in well under a second instead of training)."""
    from pathlib import Path

    texts, labels = training_set()
    model = train(texts, labels)
    names = sorted(model.vocabulary, key=model.vocabulary.__getitem__)
    path = Path(__file__).resolve().parent / SHIPPED
    np.savez_compressed(path, names=np.asarray(names), weights=model.weights, digest=np.asarray(digest()))
    return str(path)


_model: SentimentModel | None = None
_model_lock = threading.Lock()


def get_model() -> SentimentModel:
    """The process's model: the shipped one, or trained on first use when it is missing or stale."""
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                model = _shipped()
                if model is None:
                    texts, labels = training_set()
                    model = train(texts, labels)
                    log.info(
                        "sentiment model trained on %d posts (%d features)", len(texts), len(model.vocabulary)
                    )
                _model = model
    return _model


def classify(text: str) -> Sentiment:
    return get_model().classify(text)


if __name__ == "__main__":
    print(write_shipped())
