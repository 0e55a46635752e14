"""`python -m bot eval`: the labelled set is sound, the metrics are right, and quality is guarded."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bot.corpus import Passage
from bot.evaluation import DEFAULT_QUESTIONS, Item, Outcome, load_items, metrics
from tests.test_cli import run_bot

# What the bot achieves on the held-out split (issue #4 targets: hit@1 0.95, hit@3 0.99, abstention 1.0;
# see README "Answer quality"). Raise these as quality improves; never lower them to pass. (The
# abstention floor went from 0.97 to 0.91 when a harder blind batch joined the split, then up to 0.97
# with the topic classifier; a fourth blind batch, measured once, joined on 2026-11-25. Then 677 dev
# questions that use the corpus's words off topic, and on topic, moved the calibrated trade-off: held-out
# abstention 0.968 -> 0.978, hit@1 0.982 -> 0.976, hit@3 0.994 -> 0.988; the floors follow. On
# 2026-11-25 two more blind batches joined and the figures rose to hit@1 0.992, hit@3 0.998,
# abstention 0.987 on 496 + 149 questions; the floors rose with them, one question or more below.
# Two more blind batches (F, G) joined on 2026-11-25 (evening); with the answer kinds, 632 + 232
# questions give hit@1 0.989, hit@3 0.994, abstention 0.987. Two more blind batches (H, I) joined on
# 2026-11-25 (night), then J; with the closest off-topic example and a threshold that keeps dev hit@1
# at 0.95 while declining the most, 824 + 316 questions give hit@1 0.985, hit@3 0.992, abstention
# 0.991 (0.988, 0.994, 0.984 with the previous model); the floors follow, one question or more below.
# Blind batches K, L, M joined on 2026-11-25 (late night); with the exact answer kinds and near copies
# kept in one fold, 1002 + 394 questions give hit@1 0.988, hit@3 0.993, abstention 1.000; the
# floors follow, one question or more below.)
HELDOUT_MIN = {"--min-hit1": "0.985", "--min-hit3": "0.99", "--min-abstention": "0.995"}


# Questions on details a passage leaves out ("is myasthenia gravis hereditary?"): measured, not trained on.
DETAIL_QUESTIONS = Path(DEFAULT_QUESTIONS).with_name("detail_questions.jsonl")


@pytest.mark.parametrize("labelled", [DEFAULT_QUESTIONS, DETAIL_QUESTIONS])
def test_every_label_names_exactly_one_passage(passages: list[Passage], labelled: Path) -> None:
    items = load_items(labelled)
    for item in items:
        named = []
        for phrase in item.phrases:
            assert 5 <= len(phrase.split()) <= 12, item
            found = [p for p in passages if phrase in p.text]
            assert len(found) == 1, (item.question, phrase, [p.id for p in found])
            named.append(found[0])
        assert not named or named[0].section == item.section, item  # the section of the best passage
        assert len(set(named)) == len(named), item


def test_the_set_is_big_and_spread_over_all_passages(passages: list[Passage]) -> None:
    items = load_items(DEFAULT_QUESTIONS)
    on = [i for i in items if i.on_topic]
    off = [i for i in items if not i.on_topic]
    assert len(on) >= 170 and len(off) >= 40
    assert {i.split for i in items} == {"dev", "heldout"}
    # 60/40 as first written; dev questions (which are also the example questions) were added later,
    # and held-out batches were only ever added whole, written blind.
    assert sum(i.split == "dev" for i in items) / len(items) >= 0.5
    assert sum(i.split == "heldout" for i in items) >= 300
    covered = {p.id for i in on for p in passages if i.phrases[0] in p.text}
    assert covered == {p.id for p in passages}
    assert max(Counter(i.question.lower() for i in items).values()) == 1


def _outcome(rank, answered=True, offered=False, on_topic=True, shown=400) -> Outcome:
    item = Item("q", "phrase" if on_topic else None)
    return Outcome(item, answered, offered, rank, shown if answered else None)


def test_metric_maths() -> None:
    outcomes = [
        _outcome(1), _outcome(2, shown=600), _outcome(None), _outcome(1, answered=False),
        _outcome(1, answered=False, offered=True), _outcome(None, answered=False, on_topic=False),
        _outcome(None, answered=True, on_topic=False),
    ]
    m = metrics(outcomes)
    assert m["questions"] == 5 and m["off_topic"] == 2
    assert m["hit1"] == pytest.approx(1 / 5)  # a declined or offered question is no hit@1
    assert m["hit3"] == pytest.approx(3 / 5)  # rank 1, rank 2, and the offered choice
    assert m["mrr"] == pytest.approx((1 + 0.5 + 0 + 0 + 0.5) / 5)  # an offered choice counts as rank 2
    assert m["abstention"] == pytest.approx(0.5)
    assert m["median_shown"] == 400


def _write(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_cli_exit_codes_follow_the_thresholds(tmp_path: Path) -> None:
    path = _write(tmp_path, [
        {"question": "what is ALS", "answer_contains": "ALS is a type of motor neuron disease", "split": "dev"},
        {"question": "how do I bake bread", "answer_contains": None, "split": "dev"},
    ])
    ok = run_bot("eval", str(path), "--split", "dev", "--min-hit1", "1.0", "--min-abstention", "1.0")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "hit@1" in ok.stdout and "1.000" in ok.stdout
    path = _write(tmp_path, [{"question": "what is ALS", "answer_contains": "Proserin, Kalimin", "split": "dev"}])
    low = run_bot("eval", str(path), "--split", "dev", "--min-hit1", "0.5")
    assert low.returncode == 1 and "below threshold" in low.stderr
    assert "'what is ALS'" in low.stdout  # the miss is listed


def test_cli_rejects_a_malformed_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": 3}\n', encoding="utf-8")
    result = run_bot("eval", str(path))
    assert result.returncode == 2 and result.stderr.startswith("error:") and "bad.jsonl:1" in result.stderr


def test_cli_rejects_a_list_label_with_a_question_that_is_not_text(tmp_path: Path) -> None:
    path = _write(tmp_path, [{"question": 5, "answer_contains": ["ALS is a type of motor neuron"], "split": "dev"}])
    result = run_bot("eval", str(path))
    assert result.returncode == 2 and result.stderr.startswith("error:") and f"{path}:1" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_rejects_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "binary.jsonl"
    path.write_bytes(b"\xff\xfe\n")
    result = run_bot("eval", str(path))
    assert result.returncode == 2 and result.stderr.startswith("error:") and str(path) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_eval_safety_is_dispatched_lazily() -> None:
    result = run_bot("eval", "--safety")
    try:
        import bot.safety_eval  # noqa: F401
    except ImportError:
        assert result.returncode == 2 and result.stderr.startswith("error:")
        assert len(result.stderr.strip().splitlines()) == 1


def test_heldout_quality_meets_the_targets_and_beats_bm25() -> None:
    args = [a for pair in HELDOUT_MIN.items() for a in pair]
    result = run_bot("eval", "--split", "heldout", "--compare-bm25", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    hit1 = next(line.split() for line in result.stdout.splitlines() if line.startswith("hit@1"))
    assert float(hit1[1]) > float(hit1[2]), result.stdout  # ours beats bm25s
    shown = next(line.split() for line in result.stdout.splitlines() if line.startswith("median shown"))
    assert float(shown[-1]) <= 700


def test_a_question_with_several_right_passages_counts_any_of_them(tmp_path: Path) -> None:
    rows = [{"question": "x", "answer_contains": ["first phrase", "second phrase"], "split": "dev"}]
    [item] = load_items(_write(tmp_path, rows))
    assert item.phrases == ("first phrase", "second phrase")
    second_first = Outcome(item, True, False, rank=1, shown_chars=300, first_label_rank=2)
    m = metrics([second_first])
    assert m["hit1"] == 1.0 and m["hit1_first_label"] == 0.0
