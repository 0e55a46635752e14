"""Red flags: every flag of the source is detected, negations respected, temperatures read with units."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.retrieval import DataFileError
from bot.safety import detect_red_flags, load_lexicon, read_temperatures

SOURCE_FLAGS = [
    ("consciousness", "I lost consciousness for a minute and my arm is weak"),
    ("consciousness", "my dad is confused and wont wake up properly"),
    ("speech", "my speech is slurred"),
    ("speech", "his words are incoherent and garbled"),
    ("fever", "weak legs and a temperature of 39.2"),
    ("fever", "fever 102F and aching"),
    ("paralysis", "I cant move my left leg at all"),
    ("paralysis", "is this paralysis?"),
    ("one_sided", "sudden numbness on the right side of my body"),
    ("one_sided", "her face is drooping on one side"),
    ("vision", "my vision went blurry this morning"),
    ("vision", "I am seeing double"),
    ("headache", "worst headache of my life"),
    ("headache", "a strong headache and weak arms"),
]


@pytest.mark.parametrize(("flag", "message"), SOURCE_FLAGS)
def test_each_source_red_flag_is_detected(flag: str, message: str) -> None:
    assert flag in {f.id for f in detect_red_flags(message)}


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("breathing", "I cant breathe properly"),
        ("chest", "chest pain and weak arms"),
        ("swallowing", "trouble swallowing food"),
        ("speech", "slured speach"),
        ("breathing", "cant brethe"),
    ],
)
def test_life_threatening_signs_and_typos(flag: str, message: str) -> None:
    assert flag in {f.id for f in detect_red_flags(message)}


@pytest.mark.parametrize(
    "message",
    [
        "what medicines treat myasthenia gravis",
        "I do not have a headache",
        "no fever, no numbness",
        "my speech is fine",
        "temperature 38.5",
        "temp of 100.4 F",
        "a slight headache after work",
        "I sleep on my left side",
        "breathing exercises for weak muscles",
        "can I swallow the pills whole?",
    ],
)
def test_not_urgent(message: str) -> None:
    assert detect_red_flags(message) == []


def test_negation_scope_ends_at_but() -> None:
    assert [f.id for f in detect_red_flags("no fever but my speech is slurred")] == ["speech"]


@pytest.mark.parametrize(
    ("text", "celsius"),
    [("39c", 39.0), ("38,9 °C", 38.9), ("102F", 38.89), ("temp of 101.8", 38.78), ("fever 38.6", 38.6)],
)
def test_temperatures_are_read_with_units(text: str, celsius: float) -> None:
    [reading] = read_temperatures(text.lower())
    assert reading.celsius == pytest.approx(celsius, abs=0.01)


def test_threshold_is_strict() -> None:
    assert detect_red_flags("temperature 38.5 C") == []
    assert [f.id for f in detect_red_flags("temperature 38.6 C")] == ["fever"]


def test_evidence_names_what_matched() -> None:
    [flag] = detect_red_flags("my speech is slurred")
    assert flag.evidence == "slurred" and "speech" in flag.label


def test_malformed_lexicon_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "flags.toml"
    broken.write_text("[[flag]]\nid = 'x'\nlabel = 'x'\nphrases = [1]\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="flags.toml"):
        load_lexicon(broken)
    broken.write_text("not = [valid", encoding="utf-8")
    with pytest.raises(DataFileError, match="not valid TOML"):
        load_lexicon(broken)
