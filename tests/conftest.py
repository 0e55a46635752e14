"""Shared fixtures: the bundled corpus loaded once per test session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from bot.chat import Chatbot
from bot.corpus import Passage, load_passages

REPO = Path(__file__).resolve().parent.parent
CORPUS_DIR = REPO / "corpus"

# Index caches built by the tests (in-process and in subprocesses) go to a throwaway folder.
# One folder per test run: test workers (and this module imported again as tests.conftest) inherit it.
_CREATED_HERE = "BOT_TEST_CACHE_DIR" not in os.environ
if _CREATED_HERE:
    os.environ["BOT_TEST_CACHE_DIR"] = tempfile.mkdtemp(prefix="bot-test-cache-")
TEST_CACHE_DIR = os.environ["BOT_CACHE_DIR"] = os.environ["BOT_TEST_CACHE_DIR"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the throwaway index cache (once, by the process that made it: the workers are done by then)."""
    if _CREATED_HERE:
        shutil.rmtree(TEST_CACHE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def passages() -> list[Passage]:
    return load_passages(CORPUS_DIR)


@pytest.fixture(scope="session")
def chatbot(passages: list[Passage]) -> Chatbot:
    return Chatbot(passages)
