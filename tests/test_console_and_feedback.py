"""Console numbered suggestions, "more" and /why; the feedback store and `python -m bot report`."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pytest

from bot.chat import Chatbot
from bot.feedback import FeedbackStore
from tests.test_cli import always_confident_data_dir, run_bot


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
    assert re.search(r"close to the known question “[^”]+” \(similarity [01]\.\d\d\)", why)
    assert re.search(r"the classifiers trained on known questions add [+-]\d+\.\d\d to its score", why)


@pytest.mark.parametrize(("question", "number"), [("what causes muscle weakness", 3), ("what is ALS", 2)])
def test_console_numbered_topic_is_answered_from_that_section(question: str, number: int) -> None:
    # Typed as questions, these titles would be answered from another section ("Muscle weakness").
    result = run_bot("console", stdin=f"{question}\n{number}\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    title = out.split(f"\n  {number}. ", 1)[1].splitlines()[0]
    after = out.split(f"({title})", 1)[1]
    assert after.split("From “", 1)[1].startswith(f"{title}”"), (title, after[:400])


def test_console_offers_the_topic_of_a_decline_for_a_missing_figure(tmp_path: Path) -> None:
    env = always_confident_data_dir(tmp_path)
    result = run_bot("console", stdin="how many people get ALS each year\n1\n", env_extra=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "but it does not give figures on how many people have it" in out
    title = out.split("\n  1. ", 1)[1].splitlines()[0]
    assert "ALS" in title
    assert out.split(f"({title})", 1)[1].split("From “", 1)[1].startswith(f"{title}”")  # typing 1 reads it


def test_console_more_before_any_question_says_there_is_none() -> None:
    from bot.chat import Messages

    messages = Messages.load()
    result = run_bot("console", stdin="more\n")
    assert messages["no_question"] in result.stdout and messages["no_more"] not in result.stdout


def test_section_reply_answers_from_the_first_passage_and_more_continues_there(chatbot: Chatbot) -> None:
    from bot.chat import Conversation

    for title in chatbot.sections:
        section = [p for p in chatbot.passages if p.section == title]
        conversation = Conversation()
        reply = chatbot.section_reply(title, conversation)
        assert reply.answered and reply.hits[0].passage == section[0] and title not in reply.suggestions
        if len(section) > 1:
            assert chatbot.more(conversation).hits[0].passage == section[1]
    unknown = chatbot.section_reply("what is ALS", Conversation())  # not a title: asked as a question
    assert unknown.text() == chatbot.reply("what is ALS", Conversation()).text()


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


