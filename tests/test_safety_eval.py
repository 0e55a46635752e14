"""`python -m bot eval --safety`: figures, misses, exit codes; driven through subprocesses like users do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.retrieval import DataFileError
from bot.safety import default_lexicon
from bot.safety_eval import DEFAULT_SAFETY_SET, evaluate, load_cases
from tests.conftest import REPO


def run_bot(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RED_FLAGS_FILE",)}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], capture_output=True, text=True, timeout=120, env=env, cwd=REPO
    )


def write_set(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


GOOD_ROWS = [
    {"text": "my speech is slurred", "urgent": True, "flags": ["speech"], "category": "speech", "split": "dev"},
    {"text": "temperature 39.2", "urgent": True, "flags": ["fever"], "category": "temperature", "split": "heldout"},
    {"text": "no fever, no headache", "urgent": False, "flags": [], "category": "negation", "split": "dev"},
    {"text": "what is myasthenia gravis", "urgent": False, "category": "question", "split": "heldout"},
]


def test_all_found_exits_zero_and_reports_figures(tmp_path: Path) -> None:
    result = run_bot("eval", "--safety", str(write_set(tmp_path / "ok.jsonl", GOOD_ROWS)))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Overall sensitivity 100.0%   2/2" in out and "specificity 100.0%   2/2" in out
    for heading in ("split", "category", "flag", "Misses", "False alarms"):
        assert heading in out
    assert "heldout" in out and "temperature" in out


def test_one_missed_urgent_message_exits_non_zero(tmp_path: Path) -> None:
    rows = [*GOOD_ROWS, {"text": "I feel a bit tired", "urgent": True, "flags": [], "category": "mislabelled"}]
    result = run_bot("eval", "--safety", str(write_set(tmp_path / "miss.jsonl", rows)))
    assert result.returncode == 1
    assert "Misses (urgent, not escalated or a labelled flag missing): 1" in result.stdout
    assert "'I feel a bit tired'" in result.stdout
    assert "FAIL: sensitivity 66.7% is below 100.0%" in result.stdout
    # A lower threshold lets the same set pass.
    assert run_bot("eval", "--safety", "--min-sensitivity", "60%", str(tmp_path / "miss.jsonl")).returncode == 0


def test_a_wrong_flag_is_a_miss(tmp_path: Path) -> None:
    rows = [{"text": "my speech is slurred", "urgent": True, "flags": ["speech", "vision"]}]
    result = run_bot("eval", "--safety", str(write_set(tmp_path / "flag.jsonl", rows)))
    assert result.returncode == 1
    assert "labelled: speech, vision; detected: speech" in result.stdout
    assert "flag 'vision'" in result.stdout


def test_false_alarms_are_listed_and_gated_only_on_request(tmp_path: Path) -> None:
    rows = [*GOOD_ROWS, {"text": "my speech is slurred", "urgent": False, "category": "mislabelled"}]
    path = write_set(tmp_path / "alarm.jsonl", rows)
    result = run_bot("eval", "--safety", str(path))
    assert result.returncode == 0
    assert "False alarms (not urgent, escalated): 1" in result.stdout
    assert run_bot("eval", "--safety", "--min-specificity", "0.9", str(path)).returncode == 1


def test_split_option_and_quiet(tmp_path: Path) -> None:
    path = write_set(tmp_path / "ok.jsonl", GOOD_ROWS)
    result = run_bot("eval", "--safety", "--split", "heldout", "--quiet", str(path))
    assert result.returncode == 0
    assert result.stdout.startswith("safety: sensitivity 100.0%   1/1")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json\n", "line 1: not valid JSON"),
        ('{"text": "x"}\n', "line 1: 'urgent' must be true or false"),
        ('{"text": "", "urgent": true}\n', "'text' must be a non-empty string"),
        ('{"text": "x", "urgent": false, "flags": ["speech"]}\n', "a non-urgent message cannot have flags"),
        ('{"text": "x", "urgent": true, "split": "test"}\n', "'split' must be one of dev, heldout"),
        ('{"text": "x", "urgent": true, "labels": []}\n', "unknown key(s) labels"),
        ("\n", "has no messages"),
    ],
)
def test_malformed_set_is_a_one_line_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    result = run_bot("eval", "--safety", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: labelled set") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "bad.jsonl" in result.stderr


def test_missing_set_and_malformed_lexicon_exit_2(tmp_path: Path) -> None:
    result = run_bot("eval", "--safety", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2 and "nope.jsonl is missing" in result.stderr
    lexicon = tmp_path / "flags.toml"
    lexicon.write_text("[[flag]]\nid = 'x'\nlabel = 'X'\nphrases = ['ok', '']\n", encoding="utf-8")
    good = write_set(tmp_path / "ok.jsonl", GOOD_ROWS)
    for extra_args, env in ((("--lexicon", str(lexicon)), None), ((), {"RED_FLAGS_FILE": str(lexicon)})):
        result = run_bot("eval", "--safety", *extra_args, str(good), env_extra=env)
        assert result.returncode == 2
        assert result.stderr.strip() == (
            f"error: data file {lexicon}, flag 'x': phrases[1] must be a non-empty string, got ''"
        )


def test_the_bundled_set_is_well_formed_and_big_enough() -> None:
    cases = load_cases(DEFAULT_SAFETY_SET)
    urgent = [c for c in cases if c.urgent]
    assert len(cases) >= 200 and len(urgent) >= 100
    assert {c.split for c in cases} == {"dev", "heldout"}
    assert len({c.text for c in cases}) == len(cases), "duplicate messages"
    known = {rule.id for rule in default_lexicon().flags}
    assert all(c.flags <= known and (c.flags or not c.urgent) for c in cases)


def test_the_bundled_set_finds_every_urgent_message() -> None:
    report = evaluate(load_cases(DEFAULT_SAFETY_SET), default_lexicon())
    assert [o.case.text for o in report.misses] == []
    assert report.overall.specificity.value >= 0.95


def test_load_cases_rejects_bad_rows(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="line 2"):
        load_cases(write_set(tmp_path / "x.jsonl", [GOOD_ROWS[0], {"text": "x", "urgent": "yes"}]))
