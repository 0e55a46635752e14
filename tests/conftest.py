"""Shared fixtures: the bundled corpus loaded once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.chat import Chatbot
from bot.corpus import Passage, load_passages

REPO = Path(__file__).resolve().parent.parent
CORPUS_DIR = REPO / "corpus"


@pytest.fixture(scope="session")
def passages() -> list[Passage]:
    return load_passages(CORPUS_DIR)


@pytest.fixture(scope="session")
def chatbot(passages: list[Passage]) -> Chatbot:
    return Chatbot(passages)
