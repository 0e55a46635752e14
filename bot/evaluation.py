"""`python -m bot eval`: answer quality on a labelled question set (hit@1, hit@3, MRR, abstention).

Each line of the set is {"question", "answer_contains", "section", "split"}: `answer_contains` is a
phrase that only the right passage contains, a list of such phrases when several passages answer the
question (the best first), or null for an off-topic question that must be declined. hit@1 counts any
right passage; "hit@1, first label" counts only the first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from sklearn.feature_extraction.text import TfidfVectorizer

from bot.chat import DEFAULT_CORPUS_DIR, Chatbot, Conversation, Reply
from bot.corpus import Passage
from bot.retrieval import Retriever

DEFAULT_QUESTIONS = DEFAULT_CORPUS_DIR.parent / "eval" / "questions.jsonl"
SPLITS = ("dev", "heldout")
RANK_DEPTH = 3
T = TypeVar("T")
# Folds of the cross-validation used when the questions are also the bot's example questions.
FOLDS = 5
# Cosine (tf-idf over analysed terms) at which two questions count as near copies and share a fold.
NEAR_COPY = 0.75
# Joins a question's analysed terms into one string; terms may hold spaces ("arm tingl"), never this.
TERM_SEPARATOR = "|"
# Questions compared with all the others at a time when grouping near copies (bounds the memory used).
NEAR_COPY_BLOCK = 1000


class EvalFileError(Exception):
    """The question file is missing or malformed; the message names the line."""


@dataclass(frozen=True)
class Item:
    question: str
    answer_contains: str | tuple[str, ...] | None
    section: str | None = None
    split: str = "dev"

    @property
    def on_topic(self) -> bool:
        return self.answer_contains is not None

    @property
    def phrases(self) -> tuple[str, ...]:
        """The phrases of the passages that answer the question, the best first."""
        if self.answer_contains is None:
            return ()
        return (self.answer_contains,) if isinstance(self.answer_contains, str) else self.answer_contains


@dataclass(frozen=True)
class Outcome:
    """How one question went: whether the bot answered, and the rank of the right passage."""

    item: Item
    answered: bool  # a passage was shown
    offered: bool = False  # choices were offered instead of a passage
    rank: int | None = None  # 1-based rank of the right passage among those considered
    shown_chars: int | None = None  # length of the top passage shown
    first_label_rank: int | None = None  # the same for the passage of the first label only

    @property
    def hit1(self) -> bool:
        return self.answered and self.rank == 1

    @property
    def hit1_first_label(self) -> bool:
        return self.answered and self.first_label_rank == 1

    @property
    def hit3(self) -> bool:
        return (self.answered or self.offered) and self.rank is not None and self.rank <= RANK_DEPTH

    @property
    def reciprocal_rank(self) -> float:
        if not (self.answered or self.offered) or self.rank is None:
            return 0.0
        return 1.0 / max(self.rank, 1 if self.answered else 2)

    @property
    def declined(self) -> bool:
        return not self.answered and not self.offered


def load_items(path: Path | str) -> list[Item]:
    items = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise EvalFileError(f"question file {path} cannot be read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise EvalFileError(f"question file {path} cannot be read: {error}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            answer = data.get("answer_contains")
            if isinstance(answer, list) and answer and all(isinstance(a, str) and a for a in answer):
                answer = tuple(answer)
            elif not (answer is None or isinstance(answer, str)):
                raise TypeError
            if not isinstance(data["question"], str):
                raise TypeError
            items.append(Item(data["question"], answer, data.get("section"), data.get("split", "dev")))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise EvalFileError(f"{path}:{number}: expected {{\"question\": str, \"answer_contains\": str|[str, ...]|null}}") from None
    if not items:
        raise EvalFileError(f"question file {path} has no questions")
    return items


def rank_in(passages: list[Passage] | tuple[Passage, ...], phrases: str | tuple[str, ...]) -> int | None:
    """1-based rank of the first passage that contains one of the phrases."""
    needles = [p.casefold() for p in ((phrases,) if isinstance(phrases, str) else phrases)]
    return next((i + 1 for i, p in enumerate(passages) if any(n in p.text.casefold() for n in needles)), None)


def outcome_of(item: Item, reply: Reply) -> Outcome:
    """Score one reply: a hit needs the bot to have answered (or, for hit@3, offered the topic)."""
    shown = len(reply.hits[0].passage.text) if reply.hits else None
    choices = tuple(getattr(reply, "choices", ()) or ())
    if reply.hits:
        ranked = [h.passage for h in reply.candidates or reply.hits]
    else:
        ranked = [h.passage for h in choices]
    rank = rank_in(ranked, item.phrases) if item.on_topic and ranked else None
    first = rank_in(ranked, item.phrases[0]) if item.on_topic and ranked else None
    return Outcome(item, bool(reply.hits), bool(choices) and not reply.hits, rank, shown, first)


def evaluate(chatbot: Chatbot, items: list[Item], folds: int = FOLDS) -> list[Outcome]:
    """Outcomes in item order, each question asked in a fresh conversation (cross-validated, see below)."""
    return cross_validated(chatbot, items, lambda item: outcome_of(item, chatbot.reply(item.question, Conversation())), folds)


def cross_validated(chatbot: Chatbot, items: list[Item], run: Callable[[Item], T], folds: int = FOLDS) -> list[T]:
    """`run` for every item, in item order. When the bot's example questions include some of these
    questions, each fold is run with the examples of the other folds only: no question is ever
    answered with the help of its own example, nor of a near copy of it ("myasthinia gravis" and
    "myastenia gravis"; "what happens if the heart muscle is weak" and "what happens when the heart
    muscle becomes weak?"), which always falls in the same fold (see `near_copy_groups`)."""
    retriever = chatbot.retriever
    examples = retriever.example_list
    key = lru_cache(maxsize=None)(lambda question: reading(retriever, question))
    known = {key(e.question) for e in examples}
    if not any(key(item.question) in known for item in items):
        return [run(item) for item in items]
    group = near_copy_groups([key(q) for q in [*(e.question for e in examples), *(i.question for i in items)]])
    fold_of = lambda question: zlib.crc32(group[key(question)].encode()) % folds  # noqa: E731
    results: dict[int, T] = {}
    try:
        for fold in range(folds):
            retriever.use_examples([e for e in examples if fold_of(e.question) != fold])
            for n, item in enumerate(items):
                if fold_of(item.question) == fold:
                    results[n] = run(item)
    finally:
        retriever.use_examples(examples)
    return [results[n] for n in range(len(items))]


def reading(retriever: Retriever, question: str) -> str:
    """How the example index reads a question: its analysed terms (word pairs included), sorted, once
    each, joined by TERM_SEPARATOR. Two questions that read the same are the same question."""
    return TERM_SEPARATOR.join(sorted(set(retriever.example_terms(question))))


def near_copy_groups(readings: list[str]) -> dict[str, str]:
    """Each reading (see `reading`) mapped to its group's name:
    readings are joined, directly or through others, when the cosine of their tf-idf weighted terms is
    at least NEAR_COPY. Question sets written in batches hold paraphrases of one question; a fold must
    keep them together, or a nearest-example feature is credited with answering a question it has seen."""
    unique = sorted(set(readings))
    if not any(unique):
        return {reading: reading for reading in unique}
    split = lambda reading: reading.split(TERM_SEPARATOR) if reading else []  # noqa: E731
    vectors = TfidfVectorizer(analyzer=split, sublinear_tf=True).fit_transform(unique).tocsr()
    near = sp.vstack([_near_pairs(vectors[start : start + NEAR_COPY_BLOCK], vectors) for start in range(0, len(unique), NEAR_COPY_BLOCK)])
    _, labels = connected_components(near, directed=False)
    name = {label: reading for label, reading in reversed(list(zip(labels, unique)))}  # the first reading of each group
    return {reading: name[label] for reading, label in zip(unique, labels)}


def _near_pairs(block: sp.csr_matrix, vectors: sp.csr_matrix) -> sp.csr_matrix:
    """Which rows of `block` are near copies of which rows of `vectors`: a block at a time, since common
    words make the full product of thousands of questions hold tens of millions of pairs."""
    near = (block @ vectors.T).tocsr()
    near.data = near.data >= NEAR_COPY - 1e-9
    near.eliminate_zeros()
    return near


def metrics(outcomes: list[Outcome]) -> dict[str, float | int | None]:
    on = [o for o in outcomes if o.item.on_topic]
    off = [o for o in outcomes if not o.item.on_topic]
    shown = [o.shown_chars for o in on if o.shown_chars is not None]
    share = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {
        "questions": len(on),
        "off_topic": len(off),
        "hit1": share([o.hit1 for o in on]),
        "hit1_first_label": share([o.hit1_first_label for o in on]),
        "hit3": share([o.hit3 for o in on]),
        "mrr": share([o.reciprocal_rank for o in on]),
        "abstention": share([o.declined for o in off]),
        "choices": share([o.offered for o in on]),
        "median_shown": statistics.median(shown) if shown else None,
    }


def bm25_outcomes(passages: list[Passage], items: list[Item]) -> list[Outcome]:
    """The same questions ranked by bm25s over the same passages (English stop words, Snowball stems)."""
    import logging

    import bm25s  # dev dependency: imported only for --compare-bm25
    import snowballstemmer

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    stemmer = snowballstemmer.stemmer("english")
    texts = [p.search_text() for p in passages]
    index = bm25s.BM25()
    index.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    outcomes = []
    for item in items:
        tokens = bm25s.tokenize([item.question], stopwords="en", stemmer=stemmer, show_progress=False)
        k = min(RANK_DEPTH, len(passages))
        try:
            docs, scores = index.retrieve(tokens, k=k, show_progress=False)
            ranked = [passages[int(i)] for i, s in zip(docs[0], scores[0]) if s > 0]
        except (ValueError, IndexError):  # a query with no known word
            ranked = []
        rank = rank_in(ranked, item.phrases) if item.on_topic else None
        first = rank_in(ranked, item.phrases[0]) if item.on_topic else None
        outcomes.append(Outcome(item, bool(ranked), False, rank, len(ranked[0].text) if ranked else None, first))
    return outcomes


def _fmt(value: float | int | None, percent: bool = True) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if percent else f"{value:g}"


def report(name: str, ours: dict, bm25: dict | None, out=sys.stdout) -> None:
    print(f"\n== {name}: {ours['questions']} on-topic, {ours['off_topic']} off-topic questions", file=out)
    rows = [("hit@1", "hit1"), ("hit@1, first label", "hit1_first_label"), ("hit@3", "hit3"), ("MRR", "mrr"), ("off-topic declined", "abstention"),
            ("choices offered", "choices")]
    header = f"{'':22}{'ours':>8}" + (f"{'bm25s':>8}" if bm25 else "")
    print(header, file=out)
    for label, key in rows:
        line = f"{label:22}{_fmt(ours[key]):>8}"
        if bm25:
            line += f"{_fmt(bm25[key] if key not in ('abstention', 'choices') else None):>8}"
        print(line, file=out)
    print(f"{'median shown chars':22}{_fmt(ours['median_shown'], False):>8}", file=out)


def misses(outcomes: list[Outcome], out=sys.stdout) -> None:
    wrong = [o for o in outcomes if (o.item.on_topic and not o.hit1) or (not o.item.on_topic and not o.declined)]
    if not wrong:
        return
    print(f"misses ({len(wrong)}):", file=out)
    for o in wrong:
        if not o.item.on_topic:
            what = "answered an off-topic question"
        elif o.offered:
            what = f"offered choices, right one at {o.rank}" if o.rank else "offered choices, right one missing"
        elif not o.answered:
            what = "declined"
        else:
            what = f"right passage at rank {o.rank}" if o.rank else "right passage not in top 3"
        print(f"  [{o.item.split}] {o.item.question[:90]!r}: {what}", file=out)


THRESHOLDS = (("min_hit1", "hit1", "hit@1"), ("min_hit3", "hit3", "hit@3"), ("min_mrr", "mrr", "MRR"),
              ("min_abstention", "abstention", "off-topic abstention"))


def run_eval(args: argparse.Namespace) -> int:
    """Print the metrics per split; exit code 1 when one is below its --min-* threshold."""
    items = load_items(args.file or DEFAULT_QUESTIONS)
    splits = SPLITS if args.split == "all" else (args.split,)
    chatbot = Chatbot.from_corpus(args.corpus)
    failures = []
    for split in splits:
        chosen = [item for item in items if item.split == split]
        if not chosen:
            continue
        outcomes = evaluate(chatbot, chosen)
        ours = metrics(outcomes)
        bm25 = metrics(bm25_outcomes(chatbot.passages, chosen)) if args.compare_bm25 else None
        report(split, ours, bm25)
        misses(outcomes)
        for option, key, label in THRESHOLDS:
            wanted = getattr(args, option, None)
            if wanted is not None and ours[key] is not None and ours[key] < wanted:
                failures.append(f"{split}: {label} {ours[key]:.3f} < {wanted}")
    if not any(item.split in splits for item in items):
        print(f"no questions in split {args.split!r}", file=sys.stderr)
        return 1
    for failure in failures:
        print(f"below threshold: {failure}", file=sys.stderr)
    return 1 if failures else 0
