"""Operator feedback: declined questions and 👍/👎 ratings in a SQLite file (opt-in via FEEDBACK_DB).

Rows hold the kind, the question text, the passage ids and a UTC day — never a user or chat id.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import sys
import threading
from pathlib import Path

KINDS = ("declined", "up", "down")
MAX_QUESTION_CHARS = 500
SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    question TEXT NOT NULL,
    passage_ids TEXT NOT NULL,
    day TEXT NOT NULL
)
"""


class FeedbackError(Exception):
    """The feedback database cannot be opened; the message names the file."""


class FeedbackStore:
    """A FeedbackSink (see bot/chat.py) writing to SQLite; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute(SCHEMA)
        except sqlite3.Error as error:
            raise FeedbackError(f"FEEDBACK_DB {self.path} cannot be used: {error}") from None

    def record(self, kind: str, question: str, passage_ids: list[str]) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown feedback kind {kind!r}")
        day = dt.datetime.now(dt.timezone.utc).date().isoformat()
        with self._lock:
            self._db.execute(
                "INSERT INTO feedback (kind, question, passage_ids, day) VALUES (?, ?, ?, ?)",
                (kind, " ".join(question.split())[:MAX_QUESTION_CHARS], " ".join(passage_ids), day),
            )

    def most_frequent(self, kind: str, limit: int = 20) -> list[tuple[str, str, int]]:
        """(question, passage ids, count) of one kind, most frequent first (questions compared case-blind)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT MIN(question), passage_ids, COUNT(*) AS n FROM feedback WHERE kind = ? "
                "GROUP BY LOWER(question), passage_ids ORDER BY n DESC, MIN(question) LIMIT ?",
                (kind, limit),
            ).fetchall()
        return [(q, p, n) for q, p, n in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def print_report(path: str | Path, limit: int = 20, out=sys.stdout) -> int:
    """`python -m bot report`: the most frequent declined questions and 👎-rated answers."""
    if not Path(path).is_file():
        print(f"No feedback recorded yet ({path} does not exist).", file=out)
        return 0
    store = FeedbackStore(path)
    try:
        for kind, title in (("declined", "Most frequent declined questions"), ("down", "Most frequent 👎-rated answers")):
            rows = store.most_frequent(kind, limit)
            print(f"{title} ({len(rows)}):", file=out)
            for question, passages, count in rows:
                where = f"  → {passages}" if passages else ""
                print(f"  {count:>5}  {question}{where}", file=out)
            print(file=out)
    finally:
        store.close()
    return 0
