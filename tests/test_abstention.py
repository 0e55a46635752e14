"""The answer-or-decline model: bundled weights, its decisions, and `python -m bot calibrate`."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from bot.abstention import FEATURES, load_abstention_models
from bot.calibration import SIGNS, pick_threshold, signed_logistic_fit
from bot.chat import Chatbot, Conversation
from bot.evaluation import DEFAULT_QUESTIONS
from bot.retrieval import DataFileError
from tests.test_cli import run_bot

DATA = Path(__file__).resolve().parent.parent / "bot" / "data"


def test_the_bundled_models_are_complete_and_sane() -> None:
    models = load_abstention_models()
    for model in (models.with_examples, models.without_examples):
        assert set(model.weights) == set(FEATURES) and 0 < model.threshold < 1
        # a better match can only make answering more likely, unexplained words only less likely
        assert all(model.weights[name] * sign >= 0 for name, sign in SIGNS.items())
        # how well the best passage matches counts (a feature the others cover may be left at 0)
        assert sum(model.weights[name] for name in ("top_score", "top_coverage", "margin", "example_similarity")) > 0
        assert model.weights["unexplained"] < 0


def test_signed_fit_keeps_every_sign_even_when_plain_logistic_regression_would_not() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(FEATURES)))
    score = FEATURES.index("top_score")
    # the label follows the negated score: an unconstrained fit gives it a negative weight
    y = x[:, score] + 0.3 * rng.normal(size=400) < 0
    weights, _ = signed_logistic_fit(x, y)
    assert weights[score] == 0
    assert all(weights[FEATURES.index(name)] * sign >= 0 for name, sign in SIGNS.items())


def test_the_threshold_declines_the_most_while_hit1_stays_at_the_floor() -> None:
    figures = {0.6: (0.97, 0.90), 0.7: (0.96, 0.94), 0.8: (0.95, 0.96), 0.9: (0.90, 0.99)}
    assert pick_threshold(figures, 0.95) == 0.8  # 0.9 declines more but drops hit@1 below the floor
    assert pick_threshold(figures, 0.0) == 0.9
    assert pick_threshold({0.5: (0.9, 0.95), 0.6: (0.9, 0.95)}, 0.9) == 0.5  # a tie keeps the lower
    # no threshold reaches the floor (an operator's corpus without examples): the best sum
    assert pick_threshold(figures, 0.99) == 0.8 and pick_threshold({0.6: (0.7, 0.8), 0.7: (0.6, 0.85)}, 0.95) == 0.6


def test_a_corpus_without_example_questions_gets_the_model_fitted_without_them(passages) -> None:
    from bot.retrieval import Retriever, load_examples

    models = load_abstention_models()
    assert models.for_retriever(Retriever(passages)) is models.with_examples
    assert models.for_retriever(Retriever(passages, examples=[])) is models.without_examples
    # a few examples tie, but too few to fit the classifiers the first model reads: the second one
    few = [e for e in load_examples() if e.on_topic][:15]
    sparse = Retriever(passages, examples=few)
    assert len(sparse.examples) and sparse.passage_classifier is None
    assert models.for_retriever(sparse) is models.without_examples
    bot = Chatbot(passages, retriever=Retriever(passages, examples=[]))
    assert bot.reply("what is als", Conversation()).answered
    assert not bot.reply("weak wifi signal", Conversation()).answered


@pytest.mark.parametrize(
    "question", ["weak wifi signal", "strawberry jelly recipe", "my phone battery is weak", "tennis lessons for beginners"]
)
def test_anchored_but_off_topic_questions_are_declined(chatbot: Chatbot, question: str) -> None:
    assert not chatbot.reply(question, Conversation()).answered


@pytest.mark.parametrize("question", ["what is myasthenia gravis", "duck walk", "my legs feel like jelly"])
def test_on_topic_questions_are_answered(chatbot: Chatbot, question: str) -> None:
    assert chatbot.reply(question, Conversation()).answered


def _with_table(table: str, replacement: str) -> str:
    bundled = (DATA / "abstention.toml").read_text(encoding="utf-8")
    head, rest = bundled.split(f"[{table}]\n", 1)
    return head + f"[{table}]\n" + replacement + "\n" + rest.split("\n", 1)[1]  # replaces the threshold line


@pytest.mark.parametrize(
    ("broken", "says"),
    [
        ("threshold = 1.0", "threshold must be between 0 and 1"),
        ("threshold = nan", "threshold must be between 0 and 1"),
    ],
)
def test_a_malformed_model_file_is_a_one_line_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: str, says: str
) -> None:
    (tmp_path / "abstention.toml").write_text(_with_table("without_examples", broken), encoding="utf-8")
    monkeypatch.setenv("BOT_DATA_DIR", str(tmp_path))
    with pytest.raises(DataFileError, match=says):
        load_abstention_models()
    result = run_bot("ask", "hello", env_extra={"BOT_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2 and result.stderr.startswith("error:") and "abstention.toml" in result.stderr


def test_a_weight_that_is_not_a_number_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (DATA / "abstention.toml").read_text(encoding="utf-8")
    text = "\n".join("intercept = nan" if line.startswith("intercept") else line for line in text.splitlines())
    (tmp_path / "abstention.toml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("BOT_DATA_DIR", str(tmp_path))
    with pytest.raises(DataFileError, match="not a finite number"):
        load_abstention_models()
    (tmp_path / "abstention.toml").write_text("threshold = 0.5\nintercept = 0\n[weights]\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"\[with_examples\] needs"):  # the one-model layout of before
        load_abstention_models()


def test_the_bundled_model_is_what_calibrate_fits_on_the_bundled_set(tmp_path: Path) -> None:
    output = tmp_path / "abstention.toml"
    result = run_bot("calibrate", "--output", str(output), timeout=300)  # a full cross-validated fit
    assert result.returncode == 0, result.stderr
    assert "Cross-validated, with examples at threshold" in result.stdout and "without examples" in result.stdout
    # Re-run `python -m bot calibrate` after changing the question set or the example questions.
    assert output.read_text(encoding="utf-8") == (DATA / "abstention.toml").read_text(encoding="utf-8")


def test_calibrate_refuses_labels_from_another_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "knees.md").write_text("# Knees\n\nKnee pain after running is common and usually settles with rest.\n")
    result = run_bot("calibrate", "--corpus", str(corpus), "--output", str(tmp_path / "x.toml"))
    assert result.returncode == 1 and "labelled phrases are in this corpus" in result.stderr
    assert not (tmp_path / "x.toml").exists()


def test_calibrate_writes_into_bot_data_dir_when_set(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in DEFAULT_QUESTIONS.read_text(encoding="utf-8").splitlines()]
    small = tmp_path / "small.jsonl"
    small.write_text("\n".join(json.dumps(r) for r in rows[:300]) + "\n", encoding="utf-8")
    result = run_bot("calibrate", str(small), env_extra={"BOT_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "abstention.toml").is_file() and str(tmp_path) in result.stdout
    answered = run_bot("ask", "--json", "what is myasthenia gravis", env_extra={"BOT_DATA_DIR": str(tmp_path)})
    assert answered.returncode == 0 and json.loads(answered.stdout)["answered"]  # the bot reads it there


def test_calibrate_min_hit1_trades_hit1_for_declining(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in DEFAULT_QUESTIONS.read_text(encoding="utf-8").splitlines()]
    small = tmp_path / "small.jsonl"
    small.write_text("\n".join(json.dumps(r) for r in rows[:300]) + "\n", encoding="utf-8")
    figures = {}
    for floor in ("0", "1"):
        output = tmp_path / f"models-{floor}.toml"
        result = run_bot("calibrate", str(small), "--min-hit1", floor, "--output", str(output))
        assert result.returncode == 0, result.stderr
        assert f"with hit@1 at {floor} or more" in result.stdout
        found = re.search(r"with examples at threshold ([\d.]+): hit@1 ([\d.]+), off-topic abstention ([\d.]+)", result.stdout)
        assert found, result.stdout
        threshold, hit1, abstention = map(float, found.groups())
        assert tomllib.loads(output.read_text(encoding="utf-8"))["with_examples"]["threshold"] == threshold
        figures[floor] = (hit1, abstention)
    # no floor: the threshold that declines the most; an unreachable one: the best hit@1 + abstention
    assert figures["0"][1] >= figures["1"][1]
    assert sum(figures["1"]) >= sum(figures["0"])


def test_calibrate_needs_both_kinds_of_question(tmp_path: Path) -> None:
    only_on_topic = tmp_path / "on.jsonl"
    only_on_topic.write_text(json.dumps({"question": "what is ALS", "answer_contains": "ALS is a type"}) + "\n")
    result = run_bot("calibrate", str(only_on_topic), "--output", str(tmp_path / "x.toml"))
    assert result.returncode == 1 and "cannot calibrate" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.toml").exists()
