"""The command line, driven as users and scripts drive it: through subprocesses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS_DIR, REPO

CONTRACT_KEYS = {"question", "reply", "urgent", "red_flags", "answered", "passages"}


def run_bot(
    *args: str, stdin: str = "", env_extra: dict | None = None, cwd: Path = REPO, timeout: float = 60
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "EMERGENCY_", "LOG_"))}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], input=stdin, capture_output=True, text=True,
        timeout=timeout, env=env, cwd=cwd,
    )


def test_ask_json_contract() -> None:
    result = run_bot("ask", "--json", "what medicines treat myasthenia gravis", "my speech is slurred")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    for obj in (first, second):
        assert CONTRACT_KEYS <= obj.keys()
        assert isinstance(obj["urgent"], bool) and isinstance(obj["answered"], bool)
        assert isinstance(obj["red_flags"], list)
    assert first["question"] == "what medicines treat myasthenia gravis"
    assert first["answered"] and not first["urgent"] and first["red_flags"] == []
    passage = first["passages"][0]
    assert set(passage) == {"id", "section", "source", "score", "text"}
    assert passage["source"] == "muscle_weakness.txt"
    assert [p["score"] for p in first["passages"]] == sorted((p["score"] for p in first["passages"]), reverse=True)
    assert passage["text"] in first["reply"]
    assert second["urgent"] and second["red_flags"] == ["speech"]
    assert second["reply"].startswith("🚨 URGENT")


def test_ask_reads_one_question_per_stdin_line() -> None:
    result = run_bot("ask", "--json", stdin="what is ALS\n\nhow do I bake bread\n")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["question"] for r in rows] == ["what is ALS", "how do I bake bread"]
    assert rows[0]["answered"] and not rows[1]["answered"] and rows[1]["passages"] == []
    assert rows[0]["lacking"] is None and rows[1]["lacking"] is None


def always_confident_data_dir(folder: Path) -> dict[str, str]:
    """A BOT_DATA_DIR whose answer-or-decline model answers whatever passes the hard rules, so that a
    test of what the exact answer kinds decline does not hang on the calibration."""
    bundled = (REPO / "bot" / "data" / "abstention.toml").read_text(encoding="utf-8")
    (folder / "abstention.toml").write_text(re.sub(r"(?m)^threshold = .*$", "threshold = 0.0001", bundled), encoding="utf-8")
    return {"BOT_DATA_DIR": str(folder)}


def test_ask_json_says_which_exact_answer_the_text_lacks(tmp_path: Path) -> None:
    result = run_bot("ask", "--json", "how many people get ALS each year", env_extra=always_confident_data_dir(tmp_path))
    [row] = [json.loads(line) for line in result.stdout.splitlines()]
    assert not row["answered"] and row["passages"] == [] and row["lacking"] == "prevalence"
    assert "does not give figures on how many people have it" in row["reply"] and row["suggestions"]


def test_ask_plain_text_and_corpus_option(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text(
        "# Cramps\n\nNight cramps in the calves are common and usually harmless; stretching before bed often helps.\n",
        encoding="utf-8",
    )
    result = run_bot("ask", "--corpus", str(tmp_path), "what helps night cramps in my calves")
    assert result.returncode == 0, result.stderr
    assert "stretching before bed" in result.stdout


def test_emergency_number_from_environment() -> None:
    result = run_bot("ask", "I passed out", env_extra={"EMERGENCY_NUMBER": "911"})
    assert "Call 911 now" in result.stdout


def test_missing_corpus_is_one_line_exit_2(tmp_path: Path) -> None:
    for folder in (tmp_path / "missing", tmp_path):
        result = run_bot("ask", "--corpus", str(folder), "hello")
        assert result.returncode == 2
        assert result.stderr.strip().count("\n") == 0 and str(folder) in result.stderr
        assert "Traceback" not in result.stderr


def test_bench_with_a_missing_corpus_gives_the_same_one_line_error_as_ask(tmp_path: Path) -> None:
    folder = tmp_path / "missing"
    ask = run_bot("ask", "--corpus", str(folder), "hello")
    bench = run_bot("bench", "--corpus", str(folder), "--skip-large")
    assert bench.returncode == 2 and "Traceback" not in bench.stderr
    assert bench.stderr == ask.stderr and bench.stderr.startswith("error: corpus folder")


def test_empty_corpus_option_is_an_error_not_the_current_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("# Cramps\n\nNight cramps in the calves are common.\n", encoding="utf-8")
    result = run_bot("ask", "--corpus", "", "night cramps", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "argument --corpus: expected a folder, got an empty path" in result.stderr


def test_telegram_without_token_names_the_variable(tmp_path: Path) -> None:
    result = run_bot("telegram", cwd=tmp_path)
    assert result.returncode == 2
    assert "TELEGRAM_BOT_TOKEN" in result.stderr and "Traceback" not in result.stderr


def test_console_session_through_a_subprocess() -> None:
    result = run_bot("console", "--corpus", str(CORPUS_DIR), stdin="/help\nwhat is ALS\nmy vision went blurry\n/quit\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Myasthenia gravis" in out or "myasthenia gravis" in out  # /help lists topics
    assert "Amyotrophic lateral sclerosis (ALS)" in out
    assert out.index("🚨 URGENT") < out.rindex("Call 112 now") + 20
    assert "Traceback" not in result.stderr


def test_console_ends_cleanly_at_end_of_input() -> None:
    result = run_bot("console", stdin="what is ALS\n")
    assert result.returncode == 0 and "Traceback" not in result.stderr


def test_console_ends_cleanly_on_ctrl_c() -> None:
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEGRAM_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "console"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
    )
    assert process.stdout is not None
    process.stdout.readline()  # banner: the bot is up and waiting for input
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0 and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("ask", "--corpus", ""), "argument --corpus: expected a folder, got an empty path"),
        (("telegram", "--port", "0"), "argument --port: expected a whole number from 1 to 65535, got '0'"),
        (("bench", "--large-passages", "-5"), "argument --large-passages: expected a whole number of at least 1"),
        (("calibrate", "--min-hit1", "1.5"), "argument --min-hit1: expected a number from 0 to 1 (or 0% to 100%), got '1.5'"),
        (("calibrate", "--min-hit1", "nan"), "argument --min-hit1: expected a number from 0 to 1"),
        (("eval", "--min-abstention", "lots"), "argument --min-abstention: expected a number from 0 to 1"),
        (("eval", "--safety", "--min-sensitivity", "101%"), "argument --min-sensitivity: expected a number from 0 to 1"),
        (("nosuch",), "invalid choice: 'nosuch'"),
        (("ask", "--bogus"), "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_are_one_line(args: tuple[str, ...], expected: str) -> None:
    result = run_bot(*args)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and expected in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
