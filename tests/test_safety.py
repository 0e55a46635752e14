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


# ---------------------------------------------------------------------------------------------
# Every flag of the lexicon, the negation scope, temperatures, typos, malformed lexicons.

EVERY_FLAG = [
    ("consciousness", "my mother is unconscious"),
    ("consciousness", "she no longer responds when I talk to her"),
    ("speech", "his words come out wrong since this morning"),
    ("fever", "I have a fever and weak arms"),
    ("paralysis", "my son is paralysed from the waist down"),
    ("one_sided", "his smile is crooked"),
    ("vision", "double vision and a droopy eyelid"),
    ("headache", "thunderclap headache an hour ago"),
    ("breathing", "I'm short of breath and my legs are weak"),
    ("breathing", "my breathing is getting weaker"),
    ("swallowing", "he chokes on his food"),
    ("swallowing", "I can't swallow my saliva"),
    ("chest", "tightness in my chest and arm weakness"),
    ("overdose", "my son swallowed a whole bottle of tablets"),
    ("ascending_weakness", "tingling started in my feet and is now up to my knees"),
    ("balance", "I suddenly lost my balance and fell"),
]


@pytest.mark.parametrize(("flag", "message"), EVERY_FLAG)
def test_every_flag(flag: str, message: str) -> None:
    assert flag in {f.id for f in detect_red_flags(message)}


def test_every_lexicon_flag_is_tested() -> None:
    from bot.safety import default_lexicon

    assert {rule.id for rule in default_lexicon().flags} == {flag for flag, _ in EVERY_FLAG}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("No fever but I suddenly can't move my arm", ["paralysis"]),
        ("no headache, however I can't lift my leg", ["paralysis"]),
        ("I don't have a fever. I can't breathe properly", ["breathing"]),
        ("not dizzy; I'm seeing double", ["vision"]),
        ("no fever and now my face is drooping", ["one_sided"]),
        ("no headache but a fever of 39", ["fever"]),
        ("no pain, my vision is blurry though", ["vision"]),
        ("no fever, no headache, just tired legs", []),
        ("no problems with speech or vision", []),
        ("I have not fainted and my vision is fine", []),
        ("denies dizziness or loss of balance", []),
        ("my speech is normal", []),
        ("I had a fever last month but it's gone now", []),
        ("my fever went away last week", []),
        ("never lost consciousness", []),
        ("not short of breath", []),
        ("I do not have trouble swallowing", []),
        ("I am not having any trouble breathing", []),
        ("I can not even move my arm", ["paralysis"]),
    ],
)
def test_negation_is_scoped_to_its_clause(message: str, expected: list[str]) -> None:
    assert [f.id for f in detect_red_flags(message)] == expected


@pytest.mark.parametrize(
    ("message", "flag"),
    [
        ("she no longer responds", "consciousness"),  # "no longer" is not a negation
        ("the headache is not going away", "headache"),
        ("my vision is not normal", "vision"),
        ("I'm not sure but I think I have a fever", "fever"),
        ("no idea why but I can't move my legs", "paralysis"),
        ("I can't speak properly", "speech"),  # "can not" is part of the phrase
        ("not only is my speech slurred, my arm is weak", "speech"),
    ],
)
def test_pseudo_negations_do_not_negate(message: str, flag: str) -> None:
    assert flag in {f.id for f in detect_red_flags(message)}


@pytest.mark.parametrize(
    "message",
    [
        "my temperature is 39.2", "39,2 °C and weak legs", "102 F and my arms are weak", "temp 38.7",
        "fever of 39", "temperature 38.6", "thermometer says 40.1", "I measured 38.9°C this morning",
        "it's 101.5°F", "temp is 103", "she has 39 degrees", "39C and aching", "104 degrees fahrenheit",
        "TEMPERATURE 39.5 C", "temp: 38,8", "fever (39.5)", "38.6 degrees celsius", "39 º C", "39 centigrade",
        "temp 38.7 yesterday, 37 today",
    ],
)
def test_temperatures_above_the_threshold_escalate(message: str) -> None:
    assert [f.id for f in detect_red_flags(message)] == ["fever"]


@pytest.mark.parametrize(
    "message",
    [
        "my temperature is 36.6", "temp 37.2 and tired legs", "98.6 F", "temperature 38.5", "temp 38.5 °C",
        "temperature 101.3 F", "36,9 °C and achy", "I have a fever, temp 37.9",
        "I ran 5 km in 30 minutes", "I'm 38 years old and my arms feel weak", "I lift 40 kg",
        "my 39 year old husband has weak legs", "it was 39 degrees outside and I felt weak",
        "the bath water was 40 degrees", "temp 99 F", "mild fever", "low-grade fever and achy muscles",
    ],
)
def test_normal_temperatures_and_other_numbers_do_not(message: str) -> None:
    assert detect_red_flags(message) == []


@pytest.mark.parametrize(
    ("message", "flag"),
    [
        ("slured speach", "speech"), ("numbnes on my left side", "one_sided"), ("I think I'm paralized", "paralysis"),
        ("she lost consiousness", "consciousness"), ("he is unconcious", "consciousness"),
        ("cant brethe properly", "breathing"), ("my vission is blurry", "vision"), ("worst hedache ever", "headache"),
        ("I can't swalow", "swallowing"), ("chest pian", "chest"), ("SLURRED SPEECH", "speech"),
        ("my leg is paralysed", "paralysis"), ("my leg is paralyzed", "paralysis"),
    ],
)
def test_typos_spellings_and_capitals(message: str, flag: str) -> None:
    assert flag in {f.id for f in detect_red_flags(message)}


@pytest.mark.parametrize(
    "message",
    ["pins and needles after sitting cross-legged", "my slight cough", "I sleep on my left side", "my sister visited"],
)
def test_fuzzy_matching_does_not_fire_on_unrelated_words(message: str) -> None:
    assert detect_red_flags(message) == []


def test_questions_about_red_flags_escalate() -> None:
    assert [f.id for f in detect_red_flags("what does slurred speech mean?")] == ["speech"]
    assert detect_red_flags("which doctor treats polymyositis?") == []


@pytest.mark.parametrize(
    ("message", "flag"),
    [
        ("she is un conscious", "consciousness"),
        ("she is un con scious", "consciousness"),
        ("my dad has para lysis", "paralysis"),
        ("he can t move his arm", "paralysis"),  # dictation drops the apostrophe
        ("she can t breathe", "breathing"),
    ],
)
def test_words_split_by_dictation_are_still_read(message: str, flag: str) -> None:
    assert flag in [f.id for f in detect_red_flags(message)]


@pytest.mark.parametrize("message", ["the headache has gone", "she fell a sleep on the sofa", "he s at work"])
def test_rejoining_does_not_undo_what_the_words_say(message: str) -> None:
    assert detect_red_flags(message) == []


@pytest.mark.parametrize("apostrophe", ["'", " "])
def test_a_combination_is_found_past_an_earlier_negated_match_of_one_part(apostrophe: str) -> None:
    message = f"i can{apostrophe}t tell, can{apostrophe}t lift my right arm above my head since an hour ago, came on suddenly"
    assert {"paralysis", "one_sided"} <= {f.id for f in detect_red_flags(message)}


@pytest.mark.parametrize("message", ["\U00010a40", "\u00b2", "x\u00b3 weak legs", "\u2460 tired"])
def test_digit_like_characters_that_are_not_numbers_do_not_crash(message: str) -> None:
    """Characters that str.isdigit() accepts but int() does not (found by Hypothesis)."""
    assert detect_red_flags(message) == []


def test_a_huge_message_is_scanned_whole() -> None:
    text = " ".join(f"word{i} tired legs after work." for i in range(5000)) + " my speech is slurred"
    assert len(text) > 100_000
    assert [f.id for f in detect_red_flags(text)] == ["speech"]


BASE = "[[flag]]\nid = 'x'\nlabel = 'X'\nphrases = ['ok']\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not = [valid", "not valid TOML"),
        ("", "needs at least one [[flag]] table"),
        ("[[flag]]\nid = 'x'\nphrases = ['ok']\n", "flag #1: needs a non-empty string 'id' and 'label'"),
        ("[[flag]]\nid = 'x'\nlabel = 'X'\nphrases = ['ok', '']\n", "flag 'x': phrases[1] must be a non-empty string"),
        ("[[flag]]\nid = 'x'\nlabel = 'X'\nphrases = ['ok', 3]\n", "flag 'x': phrases[1] must be a non-empty string, got 3"),
        ("[[flag]]\nid = 'x'\nlabel = 'X'\nphrases = 'ok'\n", "flag 'x': 'phrases' must be a list"),
        ("[[flag]]\nid = 'x'\nlabel = 'X'\nphrases = ['a||b']\n", "empty alternative"),
        ("[[flag]]\nid = 'x'\nlabel = 'X'\nphrases = ['ok.']\n", "could never match"),
        ("[[flag]]\nid = 'x'\nlabel = 'X'\nphrase = ['ok']\n", "flag 'x': unknown key(s) 'phrase'"),
        ("[[flag]]\nid = 'x'\nlabel = 'X'\n", "flag 'x': needs 'phrases' or 'combinations'"),
        (BASE + "[[flag]]\nid = 'x'\nlabel = 'Y'\nphrases = ['b']\n", "flag #2: duplicate id 'x'"),
        ("[[flag]]\nid = 'x'\nlabel = 'X'\ncombinations = [['a']]\n", "combinations[0] must be a list of two or more"),
        ("[[flag]]\nid = 'x'\nlabel = 'X'\nsentence_combinations = 'a b'\n", "'sentence_combinations' must be a list"),
        (BASE + "[temperature]\nabbreviations = ['temp.']\n", "[temperature]: abbreviations[0] 'temp.' must be words"),
        (BASE + "[temperature.spoken_numbers]\nforty = 40\n", "[temperature.spoken_numbers]: 'forty' must map words to a string of digits"),
        (BASE + "[negation]\nwindow = 0\n", "[negation]: 'window' must be a positive integer"),
        (BASE + "[negation]\nbefore = ['no', '']\n", "[negation]: before[1] must be a non-empty string"),
        (BASE + "[negation]\nbefor = ['no']\n", "[negation]: unknown key(s) 'befor'"),
        (BASE + "[settings]\nfuzzy_cutoff = 'high'\n", "[settings]: 'fuzzy_cutoff' must be a number"),
        (BASE + "[settings]\nfever_threshold_celsius = 385\n", "'fever_threshold_celsius' must be a number from 35"),
        (BASE + "[settings]\nfuzzy_cuttof = 80\n", "[settings]: unknown key(s) 'fuzzy_cuttof'"),
        (BASE + "[temperature]\nambient = ['outside', '  ']\n", "[temperature]: ambient[1] must be a non-empty string"),
        (BASE + "[temperature]\ncontext = ['temp?']\n", "[temperature]: context[0] 'temp?' must be words"),
        (BASE + "[typos]\nnever = 'sitting'\n", "[typos]: 'never' must be a list"),
        (BASE + "flags = []\n", "unknown key(s) 'flags'"),
        ("settings = 3\n" + BASE, "[settings]: must be a table"),
    ],
)
def test_malformed_lexicon_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    broken = tmp_path / "flags.toml"
    broken.write_text(content, encoding="utf-8")
    with pytest.raises(DataFileError) as raised:
        load_lexicon(broken)
    text = str(raised.value)
    assert text.startswith(f"data file {broken}") and message in text and "\n" not in text


def test_malformed_lexicon_stops_the_bot_at_start(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    broken = tmp_path / "flags.toml"
    broken.write_text("[[flag]]\nid = 'x'\nlabel = 'X'\nphrases = ['ok', '']\n", encoding="utf-8")
    env = {**os.environ, "RED_FLAGS_FILE": str(broken)}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "ask", "hello"], capture_output=True, text=True, timeout=60, env=env, cwd=REPO
    )
    assert result.returncode == 2
    assert result.stderr == f"error: data file {broken}, flag 'x': phrases[1] must be a non-empty string, got ''\n"


def test_an_operator_lexicon_is_used(tmp_path: Path) -> None:
    custom = tmp_path / "flags.toml"
    custom.write_text(
        "[[flag]]\nid = 'rash'\nlabel = 'a rash'\nphrases = ['purple rash']\n[negation]\nbefore = ['no']\n",
        encoding="utf-8",
    )
    lexicon = load_lexicon(custom)
    assert [f.id for f in detect_red_flags("a purple rash on my legs", lexicon)] == ["rash"]
    assert detect_red_flags("no purple rash", lexicon) == []


def write_lexicon(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "flags.toml"
    path.write_text(body + "[negation]\nbefore = ['no', 'not']\nterminators = ['but']\n", encoding="utf-8")
    return path


def test_a_number_token_matches_whole_numbers_from_its_minimum(tmp_path: Path) -> None:
    lexicon = load_lexicon(write_lexicon(tmp_path, "[[flag]]\nid = 'od'\nlabel = 'OD'\nphrases = ['took #10 pills']\n"))
    assert [f.evidence for f in detect_red_flags("I took 20 pills", lexicon)] == ["took 20 pills"]
    assert detect_red_flags("I took 2 pills", lexicon) == []
    assert detect_red_flags("I took ten pills", lexicon) == []


def test_sentence_combinations_reach_across_clauses_but_negation_does_not(tmp_path: Path) -> None:
    body = (
        "[[flag]]\nid = 'side'\nlabel = 'S'\ncombinations = [['sudden*', 'left arm']]\n"
        "sentence_combinations = [['sudden*', 'left arm', 'weak']]\n"
    )
    lexicon = load_lexicon(write_lexicon(tmp_path, body))
    assert [f.id for f in detect_red_flags("weak left arm, it came on suddenly", lexicon)] == ["side"]
    assert [f.id for f in detect_red_flags("no pain, weak left arm, came on suddenly", lexicon)] == ["side"]
    assert detect_red_flags("weak left arm. It came on suddenly", lexicon) == []  # another sentence
    assert detect_red_flags("not sudden, weak left arm", lexicon) == []


def test_a_below_number_token(tmp_path: Path) -> None:
    lexicon = load_lexicon(write_lexicon(tmp_path, "[[flag]]\nid = 'o2'\nlabel = 'O2'\nphrases = ['sats #<93']\n"))
    assert [f.evidence for f in detect_red_flags("sats 88 since this morning", lexicon)] == ["sats 88"]
    assert detect_red_flags("sats 97", lexicon) == []


def test_a_symptom_stated_with_cant_does_not_negate_the_next_one() -> None:
    flags = {f.id for f in detect_red_flags("cant stand without swaying and falling sideways")}
    assert "balance" in flags
    assert {f.id for f in detect_red_flags("cant brethe cant swalow")} >= {"breathing", "swallowing"}


# How urgent worded messages are, by the mechanism they exercise.
WORDED_CASES = [
    # temperatures written without a unit
    ("I have a 102 temperature", True),
    ("I've got a 39 temperature", True),
    ("I have a temp. 39", True),
    ("my son is 39.2 and weak", True),
    ("T=39.2", True),
    ("my son is 36.6 and weak", False),
    ("I weigh 39.5 kg", False),
    ("I had a 3 day fever last month and 37 today", False),
    # a resolved phrase negates what comes before it in its clause
    ("I had trouble swallowing with tonsillitis last month but that's all cleared up", False),
    ("my vision was blurry from the eye drops, it wore off after an hour", True),  # another clause
    ("my blurry vision from the eye drops wore off after an hour", False),
    ("my speech is slurred and I had a cold but that's all cleared up", True),  # terminator between
    ("I had a fever but it's gone now and my vision is blurry", True),  # after the phrase
    # spoken numbers in temperatures
    ("temperature of forty degrees and weak", True),
    ("his temperature is over forty", True),
    ("temp 38 point 9", True),
    ("temp 38 point 4", False),
    ("fever of 38 and a half", False),  # 38.5 is not above 38.5
    ("fever of 38 and a half yesterday, 39 and a half now", True),
    ("I have forty things to do and weak legs", False),
    # negation inside a match
    ("my face isn't drooping and i can smile normally", False),  # a negation inside a phrase's gap
    ("my heart isn't racing, i'm just a bit tired", False),
    ("my face is drooping", True),
    ("my left arm isn't numb, just sore", False),  # one part of a combination negated
    ("I have no feeling in my left arm", True),  # the negation is part of the combination
    # temperature bounds, °F after "she's", other measures
    ("fever above 38.5 since yesterday", True),  # "above" makes 38.5 a lower bound
    ("been over 39 all night", True),
    ("I'm over 40 and my legs feel weak", False),  # a round number after "over" is usually an age
    ("she's 103 and won't eat", True),  # a bare 100-110 after "she's" is °F
    ("my blood sugar is 104", False),  # another measurement
    ("hr 90 temp 39", True),
    ("got 39 on the thermometer", True),
]


@pytest.mark.parametrize(("message", "urgent"), WORDED_CASES)
def test_worded_cases(message: str, urgent: bool) -> None:
    assert bool(detect_red_flags(message)) is urgent
