"""`python -m bot calibrate`: fit the answer-or-decline models (bot.abstention) on the dev split.

The model "with examples" reads features of cross-validated searches (a question never meets its own
example question); the model "without examples" reads features of searches with no example questions
at all, as on an operator's own corpus. Each threshold is the one that declines the most off-topic
questions while cross-validated hit@1 stays at --min-hit1 (0.95) or more, or, when none keeps hit@1
there, the one with the best hit@1 + off-topic abstention; those figures are printed and kept as a
comment in the written file.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.abstention import ABSTENTION_FILE, DEFAULT_MIN_HIT1, FEATURES, AbstentionModel, AbstentionModels
from bot.answer_kinds import first_exact
from bot.chat import Chatbot
from bot.evaluation import DEFAULT_QUESTIONS, Item, cross_validated, load_items, rank_in
from bot.retrieval import DATA_DIR_VARIABLE

BUNDLED_OUTPUT = Path(__file__).resolve().parent / "data" / ABSTENTION_FILE
# Below this share of on-topic labels found in the corpus, the question set is not about this corpus.
MIN_LABELS_FOUND = 0.5
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.30, 0.96, 0.01))
# The sign each of these weights must have: a better match, a clearer lead over the runner-up, an
# anchor word or more words the corpus knows never make answering less likely, and words the passage
# does not explain never make it more likely. Correlated features would otherwise trade signs (a
# negative weight on the score, made up for by another feature). A weight may come out 0.
SIGNS = {
    "top_score": 1, "classifier_score": 1, "top_coverage": 1, "example_similarity": 1, "margin": 1,
    "topic_log_odds": 1, "anchored": 1, "known_word_share": 1, "unexplained": -1, "missing_answer_kind": -1,
    "off_topic_overlap": -1,
}


@dataclass(frozen=True)
class Row:
    features: dict[str, float] | None  # None: a hard rule declines it (see collect_rows)
    on_topic: bool
    right_on_top: bool  # the best passage is a right one


def collect_rows(chatbot: Chatbot, items: list[Item]) -> list[Row]:
    def row(item: Item) -> Row:
        result = chatbot.search(item.question)
        # Declined whatever the model says: no passage, a score below the floor, or an exact answer
        # (a figure, a date, a name) the best passage cannot give.
        missing = chatbot.missing_kinds(result)  # read once, for the rule and the features
        passes = chatbot.passes_hard_rules(result) and first_exact(missing) is None
        features = chatbot.match_features(result, missing=missing) if passes else None
        right = bool(result.hits) and item.on_topic and rank_in([result.hits[0].passage], item.phrases) == 1
        return Row(features, item.on_topic, right)

    return cross_validated(chatbot, items, row)


def rates(rows: list[Row], answered: list[bool]) -> tuple[float, float]:
    """(hit@1, off-topic abstention) if exactly the `answered` rows were answered."""
    on = [(r, a) for r, a in zip(rows, answered) if r.on_topic]
    off = [(r, a) for r, a in zip(rows, answered) if not r.on_topic]
    hit1 = sum(a and r.right_on_top for r, a in on) / max(1, len(on))
    abstention = sum(not a for _, a in off) / max(1, len(off))
    return hit1, abstention


def signed_logistic_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """(weights, intercept) of a logistic regression whose weights keep the SIGNS: a weight that comes
    out with the wrong sign is fixed at 0 and the rest refitted, until every one is right."""
    from sklearn.linear_model import LogisticRegression

    free = np.ones(len(FEATURES), dtype=bool)
    while True:
        model = LogisticRegression(C=1.0, max_iter=5000).fit(x[:, free], y)
        weights = np.zeros(len(FEATURES))
        weights[free] = model.coef_[0]
        wrong = [n for n, name in enumerate(FEATURES) if free[n] and weights[n] * SIGNS.get(name, 0) < 0]
        if not wrong:
            return weights, float(model.intercept_[0])
        free[min(wrong, key=lambda n: weights[n] * SIGNS[FEATURES[n]])] = False  # the most wrong first


def pick_threshold(figures: dict[float, tuple[float, float]], min_hit1: float) -> float:
    """Of thresholds → (hit@1, abstention): the one that declines the most off-topic questions with
    hit@1 at `min_hit1` or more (on a tie the higher hit@1, then the first listed), else the one with
    the best hit@1 + abstention (on a tie the highest threshold)."""
    keeping = [t for t, (hit1, _) in figures.items() if hit1 >= min_hit1]
    if keeping:
        return max(keeping, key=lambda t: (figures[t][1], figures[t][0]))
    return max(figures, key=lambda t: (sum(figures[t]), t))


def fit(rows: list[Row], folds: int = 5, min_hit1: float = DEFAULT_MIN_HIT1) -> tuple[AbstentionModel, float, float]:
    """The model fitted on every gated-in row, its threshold, and the cross-validated (hit@1, abstention).
    The threshold declines the most off-topic questions while hit@1 stays at `min_hit1` or more; when
    no threshold keeps it there, it is the one with the best hit@1 + abstention."""
    from sklearn.model_selection import StratifiedKFold

    usable = [r for r in rows if r.features is not None]
    x = np.array([[r.features[name] for name in FEATURES] for r in usable])
    y = np.array([r.on_topic for r in usable])
    if len(set(y)) < 2 or min(y.sum(), (~y).sum()) < folds:
        raise ValueError(f"need at least {folds} on-topic and {folds} off-topic questions that pass the hard rules")
    held_out = np.zeros(len(usable))
    for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=0).split(x, y):
        weights, intercept = signed_logistic_fit(x[train], y[train])
        held_out[test] = 1.0 / (1.0 + np.exp(-(x[test] @ weights + intercept)))
    predicted = iter(held_out)
    probabilities = [next(predicted) if r.features is not None else None for r in rows]

    def scored(threshold: float) -> tuple[float, float]:
        return rates(rows, [p is not None and p >= threshold for p in probabilities])

    figures = {t: scored(t) for t in THRESHOLDS}
    best = pick_threshold(figures, min_hit1)
    weights, intercept = signed_logistic_fit(x, y)
    model = AbstentionModel(intercept, dict(zip(FEATURES, map(float, weights))), float(best))
    return model, *figures[best]


def default_output() -> Path:
    """Where the models go: the BOT_DATA_DIR folder when one is set (the bot reads them there), else the package."""
    folder = os.environ.get(DATA_DIR_VARIABLE, "").strip()
    return Path(folder) / ABSTENTION_FILE if folder else BUNDLED_OUTPUT


def labels_found(chatbot: Chatbot, items: list[Item]) -> float:
    """Share of on-topic questions whose labelled phrase is in some passage of the corpus."""
    on = [item for item in items if item.on_topic]
    return sum(rank_in(chatbot.passages, item.phrases) is not None for item in on) / max(1, len(on))


def run_calibrate(args: argparse.Namespace) -> int:
    items = [item for item in load_items(args.file or DEFAULT_QUESTIONS) if item.split == "dev"]
    if not items:
        print("no dev questions to calibrate on", file=sys.stderr)
        return 1
    # The models being fitted play no part in collecting their features: any placeholder will do.
    placeholder = AbstentionModel(0.0, {}, 0.5)
    chatbot = Chatbot.from_corpus(args.corpus, abstention=AbstentionModels(placeholder, placeholder))
    found = labels_found(chatbot, items)
    if found < MIN_LABELS_FOUND:
        print(f"cannot calibrate: only {found:.0%} of the labelled phrases are in this corpus", file=sys.stderr)
        return 1
    examples = chatbot.retriever.example_list
    min_hit1 = getattr(args, "min_hit1", DEFAULT_MIN_HIT1)
    try:
        with_examples, *with_figures = fit(collect_rows(chatbot, items), min_hit1=min_hit1)
        chatbot.retriever.use_examples([])
        try:
            without_examples, *without_figures = fit(collect_rows(chatbot, items), min_hit1=min_hit1)
        finally:
            chatbot.retriever.use_examples(examples)
    except ValueError as error:
        print(f"cannot calibrate: {error}", file=sys.stderr)
        return 1
    on = sum(i.on_topic for i in items)
    summary = (
        f"Fitted by `python -m bot calibrate` on the dev split ({on} on-topic, {len(items) - on} off-topic).\n"
        f"Each threshold declines the most off-topic questions with hit@1 at {min_hit1:g} or more (else the best sum).\n"
        f"Cross-validated, with examples at threshold {with_examples.threshold:.2f}: hit@1 {with_figures[0]:.3f}, "
        f"off-topic abstention {with_figures[1]:.3f};\n"
        f"without examples at threshold {without_examples.threshold:.2f}: hit@1 {without_figures[0]:.3f}, "
        f"off-topic abstention {without_figures[1]:.3f}."
    )
    print(summary)
    output = Path(args.output) if args.output else default_output()
    try:
        output.write_text(AbstentionModels(with_examples, without_examples).to_toml(summary), encoding="utf-8")
    except OSError as error:
        print(f"cannot write {output}: {error.strerror or error}", file=sys.stderr)
        return 1
    print(f"wrote {output}")
    return 0
