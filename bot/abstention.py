"""Whether to answer: a small logistic model over features of the best match, fitted on the dev split.

The hard rules stay in the core (no passage, or a score below the floor: decline). Past them, the
model gives the probability that the question is one the corpus answers, from how well the best
passage matches; below the threshold the bot declines. There are two models: one for when example
questions are tied to the corpus (the bundled one), one for when none are (an operator's own corpus),
whose scores lack the example signal. `python -m bot calibrate` fits both (with scikit-learn) on
cross-validated features and writes bot/data/abstention.toml; answering needs only the weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.answer_kinds import AnswerKind, missing_from_best_passage
from bot.retrieval import DataFileError, content_words, load_labelled_toml

if TYPE_CHECKING:
    from bot.retrieval import Retriever, SearchResult

ABSTENTION_FILE = "abstention.toml"
# `calibrate` picks the threshold that declines the most off-topic questions while cross-validated
# hit@1 stays at this or more: the hit@1 target, with off-topic abstention to be as high as it goes.
DEFAULT_MIN_HIT1 = 0.95
FEATURES = (
    "top_score",  # final score of the best passage, without the passage classifiers' support
    "classifier_score",  # the passage classifiers' support for it (bot.classifiers)
    "top_coverage",  # IDF-weighted share of the question's words it contains
    "example_similarity",  # cosine of its closest example question
    "margin",  # its lead over the runner-up
    "specialised_word",  # the question has a specialised corpus word ("myasthenia", "osteophytes")
    "anchored",  # it has an anchor word or a distinctive corpus phrase (bot.retrieval.QueryAnalysis)
    "unexplained",  # share of its words neither the best passage nor that passage's example questions use
    "log_content_words",  # log(1 + number of content words)
    "known_word_share",  # share of content words the corpus or the synonym map knows
    "topic_log_odds",  # the topic classifier's log-odds that the question is about the corpus (bot.classifiers)
    "missing_answer_kind",  # it asks for a kind of answer the passage has none of ("is it contagious"; bot.answer_kinds)
    "off_topic_overlap",  # what it shares, beyond the passage's words, with its closest off-topic example (bot.examples)
)


def match_features(
    result: SearchResult, retriever: Retriever, kinds: tuple[AnswerKind, ...] = (),
    question_words: tuple[str, ...] | None = None, missing: tuple[AnswerKind, ...] | None = None,
) -> dict[str, float]:
    """The features of a search result (with at least one hit) that the model reads. The kind of answer
    asked for is read from `question_words` when given: a follow-up's own words, not the topic it
    borrowed; the subject the passage must be about is read from all the words searched. `missing`: the
    kinds the best passage lacks, when the caller has already read them."""
    if missing is None:
        missing = missing_from_best_passage(kinds, result, retriever, question_words)
    hits = result.hits
    top = hits[0]
    content = content_words(result.query.words)
    stem = retriever.analyzer.stem
    known = [w for w in content if w in retriever.known_words or stem(w) in retriever.known_stems]
    stems = {stem(w) for w in result.query.words}
    return {
        "top_score": top.score - top.classifier_score,
        "classifier_score": top.classifier_score,
        "top_coverage": top.coverage,
        "example_similarity": top.example_similarity,
        "margin": top.score - hits[1].score if len(hits) > 1 else top.score,
        "specialised_word": float(bool(stems & retriever.specialised_stems)),
        "anchored": float(result.query.anchored),
        "unexplained": top.unexplained,
        "log_content_words": math.log1p(len(content)),
        "known_word_share": len(known) / len(content) if content else 0.0,
        # 0 (undecided) without a classifier: no off-topic example questions for this corpus
        "topic_log_odds": retriever.topic.log_odds(result.terms) if retriever.topic else 0.0,
        # An exact kind (a figure, a date, a name) is not weighed: the bot declines without it (bot.chat).
        "missing_answer_kind": float(any(not kind.exact for kind in missing)),
        "off_topic_overlap": retriever.off_topic_examples.closest_overlap(list(result.terms), explained=top.matched_terms),
    }


@dataclass(frozen=True)
class AbstentionModel:
    intercept: float
    weights: dict[str, float]
    threshold: float

    def probability(self, features: dict[str, float]) -> float:
        z = self.intercept + sum(self.weights.get(name, 0.0) * value for name, value in features.items())
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def answers(self, features: dict[str, float]) -> bool:
        return self.probability(features) >= self.threshold

    def to_toml(self, table: str) -> str:
        lines = [f"[{table}]", f"threshold = {self.threshold:.4f}", f"intercept = {self.intercept:.6f}", "", f"[{table}.weights]"]
        lines += [f"{name} = {self.weights[name]:.6f}" for name in FEATURES]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class AbstentionModels:
    with_examples: AbstentionModel
    without_examples: AbstentionModel

    def for_retriever(self, retriever: Retriever) -> AbstentionModel:
        """The model that matches how the retriever scores: with example questions and the classifiers
        fitted on them, or without (an operator's corpus, or too few examples to fit the classifiers)."""
        fitted = retriever.topic is not None and retriever.passage_classifier is not None
        return self.with_examples if len(retriever.examples) and fitted else self.without_examples

    def to_toml(self, comment: str = "") -> str:
        lines = [f"# {line}" if line else "#" for line in comment.splitlines()]
        return "\n".join(lines) + "\n\n" + self.with_examples.to_toml("with_examples") + "\n" + self.without_examples.to_toml("without_examples")


def load_abstention_models(source: str = ABSTENTION_FILE) -> AbstentionModels:
    label, data = load_labelled_toml(source)
    return AbstentionModels(_model(data, "with_examples", label), _model(data, "without_examples", label))


def _model(data: dict, table: str, source: str) -> AbstentionModel:
    try:
        section = data[table]
        weights = {name: float(section["weights"][name]) for name in FEATURES}
        model = AbstentionModel(float(section["intercept"]), weights, float(section["threshold"]))
    except (KeyError, TypeError, ValueError):
        raise DataFileError(
            f"data file {source}: [{table}] needs threshold, intercept and weights for {', '.join(FEATURES)}"
            " (re-run `python -m bot calibrate` to write one)"
        ) from None
    if not all(math.isfinite(v) for v in (model.intercept, *weights.values())):
        raise DataFileError(f"data file {source}: [{table}] has a weight that is not a finite number")
    if not 0.0 < model.threshold < 1.0:
        raise DataFileError(f"data file {source}: [{table}] threshold must be between 0 and 1")
    return model
