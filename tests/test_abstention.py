"""The answer-or-decline model: bundled weights, its decisions, and `python -m bot calibrate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.abstention import FEATURES, load_abstention_model
from bot.chat import Chatbot, Conversation
from bot.evaluation import DEFAULT_QUESTIONS
from bot.retrieval import DataFileError
from tests.test_cli import run_bot

DATA = Path(__file__).resolve().parent.parent / "bot" / "data"


def test_the_bundled_model_is_complete_and_sane() -> None:
    model = load_abstention_model()
    assert set(model.weights) == set(FEATURES) and 0 < model.threshold < 1
    # a better match can only make answering more likely
    assert model.weights["top_score"] > 0 and model.weights["top_coverage"] > 0


@pytest.mark.parametrize(
    "question", ["weak wifi signal", "strawberry jelly recipe", "my phone battery is weak", "tennis lessons for beginners"]
)
def test_anchored_but_off_topic_questions_are_declined(chatbot: Chatbot, question: str) -> None:
    assert not chatbot.reply(question, Conversation()).answered


@pytest.mark.parametrize("question", ["what is myasthenia gravis", "duck walk", "my legs feel like jelly"])
def test_on_topic_questions_are_answered(chatbot: Chatbot, question: str) -> None:
    assert chatbot.reply(question, Conversation()).answered


def test_a_malformed_model_file_is_a_one_line_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "abstention.toml").write_text("threshold = 2\nintercept = 0\n[weights]\n", encoding="utf-8")
    monkeypatch.setenv("BOT_DATA_DIR", str(tmp_path))
    with pytest.raises(DataFileError, match="abstention.toml"):
        load_abstention_model()
    result = run_bot("ask", "hello", env_extra={"BOT_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2 and result.stderr.startswith("error:") and "abstention.toml" in result.stderr


def test_the_bundled_model_is_what_calibrate_fits_on_the_bundled_set(tmp_path: Path) -> None:
    output = tmp_path / "abstention.toml"
    result = run_bot("calibrate", "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert "Cross-validated at threshold" in result.stdout
    # Re-run `python -m bot calibrate` after changing the question set or the example questions.
    assert output.read_text(encoding="utf-8") == (DATA / "abstention.toml").read_text(encoding="utf-8")


def test_calibrate_writes_a_model_the_bot_can_load(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in DEFAULT_QUESTIONS.read_text(encoding="utf-8").splitlines()]
    small = tmp_path / "small.jsonl"
    small.write_text("\n".join(json.dumps(r) for r in rows[:300]) + "\n", encoding="utf-8")
    output = tmp_path / "abstention.toml"
    assert run_bot("calibrate", str(small), "--output", str(output)).returncode == 0
    answered = run_bot("ask", "--json", "what is myasthenia gravis", env_extra={"BOT_DATA_DIR": str(tmp_path)})
    assert answered.returncode == 0 and json.loads(answered.stdout)["answered"]


def test_calibrate_needs_both_kinds_of_question(tmp_path: Path) -> None:
    only_on_topic = tmp_path / "on.jsonl"
    only_on_topic.write_text(json.dumps({"question": "what is ALS", "answer_contains": "ALS is a type"}) + "\n")
    result = run_bot("calibrate", str(only_on_topic), "--output", str(tmp_path / "x.toml"))
    assert result.returncode == 1 and "cannot calibrate" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.toml").exists()
