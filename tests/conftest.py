"""Shared fixtures: the bundled corpus loaded once per test session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from bot.chat import Chatbot
from bot.corpus import Passage, load_passages

REPO = Path(__file__).resolve().parent.parent
CORPUS_DIR = REPO / "corpus"

# Index caches built by the tests (in-process and in subprocesses) go to a throwaway folder.
os.environ["BOT_CACHE_DIR"] = tempfile.mkdtemp(prefix="bot-test-cache-")


@pytest.fixture(scope="session")
def passages() -> list[Passage]:
    return load_passages(CORPUS_DIR)


@pytest.fixture(scope="session")
def chatbot(passages: list[Passage]) -> Chatbot:
    return Chatbot(passages)
