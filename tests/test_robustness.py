"""Hostile input never breaks the reply path; corpus faults end in a warning or a one-line error."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.chat import Chatbot
from bot.corpus import load_passages, read_stable_bytes
from tests.test_cli import run_bot

TELEGRAM_LIMIT = 4096
MARKUP = "<>&*_[]`"

hostile_text = st.one_of(
    st.text(max_size=3000),
    st.text(alphabet=st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"]), max_size=500),
    st.builds(lambda n, base: base + "\u200f\u202e" * n, st.integers(0, 500), st.text(max_size=50)),
    st.builds(lambda n: "e" + "\u0301" * n, st.integers(0, 20_000)),
    st.builds(lambda n, e: e * n, st.integers(0, 5000), st.sampled_from(["😀", "👍🏽", "🇺🇦", "❤️"])),
    st.text(alphabet=MARKUP + " abc", max_size=2000),
    st.from_regex(r"[0-9 .,°CF]{0,300}", fullmatch=True),
    st.lists(st.sampled_from(["the", "and", "is", "a", "of", "to", "it", "not"]), max_size=400).map(" ".join),
    st.builds(lambda word, n: (word + " ") * n, st.sampled_from(["weak", "slured", "fever 39", "no"]), st.integers(0, 3000)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=hostile_text)
def test_reply_path_never_raises_and_fits_a_message(chatbot: Chatbot, text: str) -> None:
    reply = chatbot.reply(text)
    rendered = reply.text()
    assert rendered.startswith(("🚨", chatbot.messages["preamble"]))
    assert len(rendered) <= TELEGRAM_LIMIT
    assert reply.answered == bool(reply.hits)


def test_one_megabyte_line(chatbot: Chatbot) -> None:
    reply = chatbot.reply("x" * 1_000_000)
    assert len(reply.text()) <= TELEGRAM_LIMIT and "first 2000 characters" in reply.text()


def test_configured_input_limit(passages) -> None:
    bot = Chatbot(passages, max_message_chars=100)
    reply = bot.reply("why are my legs weak " * 20)
    assert len(reply.question) == 100 and "first 100 characters" in reply.text()


def test_unreadable_file_is_skipped_with_a_warning(tmp_path: Path, monkeypatch, caplog) -> None:
    good = tmp_path / "good.txt"
    good.write_text("Cramps\n\nNight cramps in the calves are common and usually harmless for most people.", encoding="utf-8")
    locked = tmp_path / "locked.txt"
    locked.write_text("secret", encoding="utf-8")
    real_read = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "locked.txt":
            raise PermissionError(13, "Permission denied")
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with caplog.at_level(logging.WARNING):
        passages = load_passages(tmp_path)
    assert [p.source for p in passages] == ["good.txt"]
    assert "locked.txt" in caplog.text and "Permission denied" in caplog.text


def test_file_changing_while_read_is_read_again(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "moving.txt"
    path.write_text("first version", encoding="utf-8")
    real_read = Path.read_bytes
    reads = []

    def read_bytes(self: Path) -> bytes:
        data = real_read(self)
        reads.append(data)
        if len(reads) == 1:
            self.write_text("second, longer version of the file", encoding="utf-8")  # changed mid-read
        return data

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert read_stable_bytes(path) == b"second, longer version of the file"
    assert len(reads) == 2


def test_file_vanishing_before_read_is_skipped(tmp_path: Path, caplog) -> None:
    path = tmp_path / "gone.txt"
    with caplog.at_level(logging.WARNING):
        assert read_stable_bytes(path) is None
    assert "gone.txt" in caplog.text


@pytest.mark.parametrize("encoding", ["latin-1", "cp1251"])
def test_non_utf8_corpus_is_decoded_with_a_warning(tmp_path: Path, encoding: str) -> None:
    text = {
        "latin-1": "Faiblesse\n\nLa faiblesse musculaire est fréquente chez les personnes âgées et mérite une visite chez le médecin.",
        "cp1251": "Слабость\n\nМышечная слабость часто встречается у пожилых людей и требует внимательного осмотра у врача.",
    }[encoding]
    (tmp_path / "text.txt").write_bytes(text.encode(encoding))
    result = run_bot("ask", "--json", "--corpus", str(tmp_path), "слабость faiblesse")
    assert result.returncode == 0, result.stderr
    assert "not valid UTF-8" in result.stderr
    [passage] = load_passages(tmp_path)
    assert passage.text == text.split("\n\n")[1]


def test_corpus_of_only_binary_files_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "image.txt").write_bytes(bytes(range(256)) * 10)
    result = run_bot("ask", "--corpus", str(tmp_path), "hello")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error:") and str(tmp_path) in lines[-1]
    assert "Traceback" not in result.stderr
