"""Console numbered suggestions, "more" and /why; the feedback store and `python -m bot report`."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from bot.chat import Chatbot
from bot.feedback import FeedbackStore
from tests.test_cli import run_bot


def test_console_numbers_more_and_why() -> None:
    stdin = "what is guillain barre syndrome\n1\nmore\n/why\nguilian bare\n/why\n"
    result = run_bot("console", stdin=stdin)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Related (type a number):" in out and "  1. " in out
    first_choice = out.split("  1. ", 1)[1].splitlines()[0]
    assert f"({first_choice})" in out  # typing 1 asked the first suggestion
    assert out.count("From “") >= 3  # answer, the chosen suggestion, and "more"
    why = out.split("How “guilian bare” was matched:", 1)[1]
    assert "guilian → guillain" in why and "gbs" in why and "words in common" in why


def test_console_why_before_any_question() -> None:
    result = run_bot("console", stdin="/why\n")
    assert "Nothing to explain yet" in result.stdout


def test_feedback_store_records_without_user_ids(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.db")
    store.record("declined", "how do I bake bread", [])
    store.record("declined", "How do I bake  bread", [])
    store.record("down", "what is ALS", ["muscle_weakness-027"])
    store.record("up", "what is ALS", ["muscle_weakness-027"])
    assert store.most_frequent("declined") == [("How do I bake bread", "", 2)]
    assert store.most_frequent("down") == [("what is ALS", "muscle_weakness-027", 1)]
    store.close()
    columns = [row[1] for row in sqlite3.connect(tmp_path / "fb.db").execute("PRAGMA table_info(feedback)")]
    assert columns == ["id", "kind", "question", "passage_ids", "day"]


def test_chatbot_records_declined_questions_and_ratings(passages, tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.db")
    bot = Chatbot(passages, feedback=store)
    bot.reply("how do I bake bread")
    bot.reply("what is ALS")
    bot.reply("how do I bake bread, I can not speak")  # urgent: not an improvement hint, not recorded
    assert bot.record_feedback("down", "what is ALS", ["muscle_weakness-027"])
    assert [r[0] for r in store.most_frequent("declined")] == ["how do I bake bread"]
    assert store.most_frequent("down")[0][2] == 1
    assert not Chatbot(passages).record_feedback("down", "q", [])


def test_report_command(tmp_path: Path) -> None:
    db = tmp_path / "fb.db"
    env = {"FEEDBACK_DB": str(db)}
    asked = run_bot("ask", stdin="how to fix my car\nhow to fix my car\nwhat is ALS\n", env_extra=env)
    assert asked.returncode == 0 and db.is_file()
    store = FeedbackStore(db)
    store.record("down", "what is ALS", ["muscle_weakness-027"])
    store.close()
    report = run_bot("report", "--limit", "5", env_extra=env)
    assert report.returncode == 0, report.stderr
    assert "2  how to fix my car" in report.stdout
    assert "what is ALS  → muscle_weakness-027" in report.stdout
    unset = run_bot("report", env_extra={k: "" for k in ("FEEDBACK_DB",)})
    assert unset.returncode == 2 and unset.stderr.startswith("error:")


