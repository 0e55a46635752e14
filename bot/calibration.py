"""`python -m bot calibrate`: fit the answer-or-decline model (bot.abstention) on the dev split.

Features come from cross-validated searches (a question never meets its own example question). The
threshold is the one that maximises the mean of hit@1 and off-topic abstention on cross-validated
predictions; those figures are printed and kept as a comment in the written file.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.abstention import ABSTENTION_FILE, FEATURES, AbstentionModel, match_features
from bot.chat import Chatbot
from bot.evaluation import DEFAULT_QUESTIONS, Item, cross_validated, load_items, rank_in

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "data" / ABSTENTION_FILE
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.30, 0.96, 0.01))


@dataclass(frozen=True)
class Row:
    features: dict[str, float] | None  # None: a hard rule declines it (no hit, no anchor, low score)
    on_topic: bool
    right_on_top: bool  # the best passage is a right one


def collect_rows(chatbot: Chatbot, items: list[Item]) -> list[Row]:
    def row(item: Item) -> Row:
        result = chatbot.search(item.question)
        gated = not result.hits or not result.query.anchored or result.best_score < chatbot.answer_threshold
        features = None if gated else match_features(result, chatbot.retriever)
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


def fit(rows: list[Row], folds: int = 5) -> tuple[AbstentionModel, float, float]:
    """The model fitted on every gated-in row, its threshold, and the cross-validated (hit@1, abstention)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    usable = [r for r in rows if r.features is not None]
    x = np.array([[r.features[name] for name in FEATURES] for r in usable])
    y = np.array([r.on_topic for r in usable])
    if len(set(y)) < 2 or min(y.sum(), (~y).sum()) < folds:
        raise ValueError(f"need at least {folds} on-topic and {folds} off-topic questions that pass the hard rules")
    estimator = LogisticRegression(C=1.0, max_iter=5000)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    predicted = iter(cross_val_predict(estimator, x, y, cv=splitter, method="predict_proba")[:, 1])
    probabilities = [next(predicted) if r.features is not None else None for r in rows]

    def scored(threshold: float) -> tuple[float, float]:
        return rates(rows, [p is not None and p >= threshold for p in probabilities])

    best = max(THRESHOLDS, key=lambda t: (sum(scored(t)), t))
    estimator.fit(x, y)
    model = AbstentionModel(
        float(estimator.intercept_[0]), dict(zip(FEATURES, map(float, estimator.coef_[0]))), float(best)
    )
    return model, *scored(best)


def run_calibrate(args: argparse.Namespace) -> int:
    items = [item for item in load_items(args.file or DEFAULT_QUESTIONS) if item.split == "dev"]
    if not items:
        print("no dev questions to calibrate on", file=sys.stderr)
        return 1
    # The model being fitted plays no part in collecting its features: any placeholder will do.
    chatbot = Chatbot.from_corpus(args.corpus, abstention=AbstentionModel(0.0, {}, 0.5))
    try:
        model, hit1, abstention = fit(collect_rows(chatbot, items))
    except ValueError as error:
        print(f"cannot calibrate: {error}", file=sys.stderr)
        return 1
    on = sum(i.on_topic for i in items)
    summary = (
        f"Fitted by `python -m bot calibrate` on the dev split ({on} on-topic, {len(items) - on} off-topic).\n"
        f"Cross-validated at threshold {model.threshold:.2f}: hit@1 {hit1:.3f}, off-topic abstention {abstention:.3f}."
    )
    print(summary)
    output = Path(args.output) if args.output else DEFAULT_OUTPUT
    output.write_text(model.to_toml(summary), encoding="utf-8")
    print(f"wrote {output}")
    return 0
