from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.corpus import CorpusError, Passage, load_passages, merge_near_duplicates, split_into_passages
from tests.conftest import CORPUS_DIR

SOURCE = (CORPUS_DIR / "muscle_weakness.txt").read_text(encoding="utf-8")


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_bundled_corpus_matches_shared_source() -> None:
    shared = CORPUS_DIR.parent.parent / "shared" / "corpus" / "muscle_weakness.txt"
    if not shared.exists():
        pytest.skip("shared source not present in this checkout")
    assert shared.read_bytes() == (CORPUS_DIR / "muscle_weakness.txt").read_bytes()


def test_passages_follow_sections(passages: list[Passage]) -> None:
    sections = {p.section for p in passages}
    for heading in (
        "Myasthenia gravis",
        "Nerve compression",
        "Amyotrophic lateral sclerosis (ALS)",
        "When should you see a doctor immediately?",
        "How muscle weakness is corrected (treatment depending on the causes)",
    ):
        assert heading in sections
    myasthenia = [p for p in passages if p.section == "Myasthenia gravis"]
    assert all("myasthenia" in p.text.lower() for p in myasthenia)


def test_passage_fields_and_sizes(passages: list[Passage]) -> None:
    ids = [p.id for p in passages]
    assert len(ids) == len(set(ids))
    assert all(p.source == "muscle_weakness.txt" and p.text.strip() for p in passages)
    assert all(len(p.text) <= 700 for p in passages)
    sizes = sorted(len(p.text) for p in passages)
    assert sizes[len(sizes) // 2] >= 200  # most passages are substantial, not fragments


def test_bullet_list_stays_with_lead_in(passages: list[Passage]) -> None:
    [urgent] = [p for p in passages if "slurred or incoherent speech" in p.text]
    assert "you need to urgently seek medical help:" in urgent.text
    for bullet in ("disturbance of consciousness", "above 38.5 degrees Celsius", "Strong headache"):
        assert bullet in urgent.text


def test_no_sentence_is_cut(passages: list[Passage]) -> None:
    for passage in passages:
        text = passage.text.rstrip()
        assert text[-1] in ".;:?!)»\"”", f"{passage.id} ends mid-sentence: {text[-40:]!r}"
        # every passage's text is a verbatim span of the source (whitespace aside)
        assert normalise(text) in normalise(SOURCE) or passage.also_in


def test_near_duplicates_are_merged(passages: list[Passage]) -> None:
    merged = [p for p in passages if p.also_in]
    assert merged, "the source repeats paragraphs; they should be merged"
    texts = [normalise(p.text) for p in passages]
    assert len(texts) == len(set(texts))


def test_merge_keeps_longer_and_records_section() -> None:
    a = Passage("a-1", "a.txt", "First", "Muscle weakness can be caused by overwork and stress in many people.")
    b = Passage("a-2", "a.txt", "Second", "Muscle weakness can be caused by overwork and stress in many people, often.")
    [kept] = merge_near_duplicates([a, b])
    assert kept.text == b.text and "First" in kept.also_in + (kept.section,)


def test_headings_and_long_paragraph_split() -> None:
    sentence = "Weakness of the legs can develop slowly over many months in older people. "
    text = "Leg weakness\n\n" + sentence * 20 + "\n\nWhat helps?\n\nRest helps most people recover their strength."
    parts = split_into_passages(text, "x.txt")
    assert {p.section for p in parts} == {"Leg weakness", "What helps?"}
    long_parts = [p for p in parts if p.section == "Leg weakness"]
    assert len(long_parts) >= 2 and all(len(p.text) <= 700 for p in long_parts)
    assert all(p.text.endswith(".") for p in long_parts)


def test_missing_and_empty_corpus(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        load_passages(tmp_path / "nope")
    with pytest.raises(CorpusError, match=str(tmp_path)):
        load_passages(tmp_path)


def test_non_utf8_falls_back_and_binary_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "latin.txt").write_bytes("Myopathy\n\nMuscle weakness in the café is a symptom worth a visit.".encode("cp1252"))
    (tmp_path / "blob.txt").write_bytes(b"\x00\x01\x02binary\x00" * 50)
    found = load_passages(tmp_path)
    assert any("café" in p.text for p in found)
    assert all(p.source == "latin.txt" for p in found)
    assert "blob.txt" in caplog.text


def test_files_with_the_same_name_get_distinct_passage_ids(tmp_path: Path) -> None:
    texts = {"a": "# Low potassium\n\nLow potassium can go with cramps and weak legs.\n",
             "b": "# Vitamin D\n\nA lack of vitamin D makes bones ache and tire quickly.\n"}
    for folder, text in texts.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "guide.md").write_text(text)
    (tmp_path / "other.txt").write_text("Other text about fatigue and tiredness in general.\n")
    ids = [p.id for p in load_passages(tmp_path)]
    assert ids == ["a-guide-md-001", "b-guide-md-001", "other-001"]  # a unique file name keeps the short id
