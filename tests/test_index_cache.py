"""The persisted index: reused while the corpus is unchanged, rebuilt when it changes, safe formats only."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from bot.corpus import load_passages
from bot.index_cache import corpus_fingerprint, index_settings, load_or_build_index
from bot.retrieval import Retriever, build_index_state
from tests.conftest import CORPUS_DIR
from tests.test_cli import run_bot


def copy_corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    shutil.copytree(CORPUS_DIR, folder)
    return folder


def test_second_load_comes_from_the_cache(tmp_path: Path, monkeypatch) -> None:
    corpus = copy_corpus(tmp_path)
    first = load_or_build_index(corpus, cache_root=tmp_path / "cache")
    monkeypatch.setattr("bot.index_cache.build_index_state", lambda *a, **k: (_ for _ in ()).throw(AssertionError("rebuilt")))
    second = load_or_build_index(corpus, cache_root=tmp_path / "cache")
    assert [p.id for p in second.passages] == [p.id for p in first.passages]
    assert (second.columns != first.columns).nnz == 0 and np.array_equal(second.idf, first.idf)
    files = sorted(p.name for p in next((tmp_path / "cache").iterdir()).iterdir())
    assert files == ["arrays.npz", "columns.npz", "meta.json", "passages.json"]


def test_changing_a_corpus_file_rebuilds(tmp_path: Path) -> None:
    corpus = copy_corpus(tmp_path)
    key_before = corpus_fingerprint(corpus, index_settings())
    load_or_build_index(corpus, cache_root=tmp_path / "cache")
    with (corpus / "muscle_weakness.txt").open("a", encoding="utf-8") as handle:
        handle.write("\n\nCramps\n\nNight cramps in the calves are common and usually harmless for most people.\n")
    assert corpus_fingerprint(corpus, index_settings()) != key_before
    state = load_or_build_index(corpus, cache_root=tmp_path / "cache")
    assert any("Night cramps" in p.text for p in state.passages)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_damaged_cache_is_rebuilt_with_a_warning(tmp_path: Path, caplog) -> None:
    corpus = copy_corpus(tmp_path)
    load_or_build_index(corpus, cache_root=tmp_path / "cache")
    [folder] = list((tmp_path / "cache").iterdir())
    (folder / "columns.npz").write_bytes(b"not a zip file")
    with caplog.at_level(logging.WARNING):
        state = load_or_build_index(corpus, cache_root=tmp_path / "cache")
    assert state.passages and "damaged index cache" in caplog.text


def test_cached_and_fresh_retrievers_rank_identically(tmp_path: Path) -> None:
    corpus = copy_corpus(tmp_path)
    fresh = Retriever(load_passages(corpus))
    load_or_build_index(corpus, cache_root=tmp_path / "cache")
    cached = Retriever(state=load_or_build_index(corpus, cache_root=tmp_path / "cache"))
    for question in ("what medicines treat myasthenia gravis", "why are my legs weak", "guilian bare"):
        a, b = fresh.search(question), cached.search(question)
        assert [(h.passage.id, round(h.score, 6)) for h in a.hits] == [(h.passage.id, round(h.score, 6)) for h in b.hits]


def test_scores_are_tfidf_cosine_similarities(passages) -> None:
    """Hashed features scored column-wise give scikit-learn's TfidfVectorizer cosine similarities."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from bot.retrieval import Analyzer

    retriever = Retriever(state=build_index_state(passages))
    reference = TfidfVectorizer(analyzer=Analyzer(), sublinear_tf=True)
    matrix = reference.fit_transform(p.search_text() for p in passages)
    for question in ("weakness in the legs and arms after training", "what tablets treat myasthenia gravis zzyzx"):
        text = retriever.analyse(question).search_text
        expected = (matrix @ reference.transform([text]).T).toarray().ravel()
        columns, weights, _ = retriever.query_vector(text)
        ours = np.asarray(retriever.columns[:, columns] @ weights).ravel()
        assert ours == pytest.approx(expected, abs=1e-5)


def test_index_command_builds_then_reuses(tmp_path: Path) -> None:
    corpus = copy_corpus(tmp_path)
    env = {"BOT_CACHE_DIR": str(tmp_path / "cache")}
    first = run_bot("index", "--corpus", str(corpus), env_extra=env)
    second = run_bot("index", "--corpus", str(corpus), env_extra=env)
    assert first.returncode == 0 and "index built: 42 passages" in first.stdout
    assert second.returncode == 0 and "already up to date" in second.stdout


def test_minhash_merging_finds_the_same_duplicates(monkeypatch) -> None:
    """Large corpora use MinHash candidates; on the bundled text they find what all-pairs finds."""
    from bot import corpus as corpus_module

    raw = corpus_module.split_into_passages((CORPUS_DIR / "muscle_weakness.txt").read_text(encoding="utf-8"), "m.txt")
    exhaustive = corpus_module.merge_near_duplicates(raw)
    monkeypatch.setattr(corpus_module, "EXHAUSTIVE_DEDUP_LIMIT", 0)
    with_minhash = corpus_module.merge_near_duplicates(raw)
    assert [(p.id, p.also_in) for p in with_minhash] == [(p.id, p.also_in) for p in exhaustive]
    assert len(with_minhash) < len(raw)


def test_answering_from_a_cached_index_does_not_import_sklearn(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    corpus = copy_corpus(tmp_path)
    env = {**os.environ, "BOT_CACHE_DIR": str(tmp_path / "cache")}
    script = (
        "import sys\nfrom bot.chat import Chatbot\n"
        f"bot = Chatbot.from_corpus({str(corpus)!r})\n"
        "assert bot.reply('what is als').answered\n"
        "print('sklearn' in sys.modules)\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
        for _ in range(2)
    ]
    assert [r.stdout.strip() for r in runs] == ["True", "False"], [r.stderr for r in runs]  # built, then cached


def test_query_hashing_matches_sklearn_hashing_vectorizer() -> None:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
    from sklearn.utils import murmurhash3_32

    from bot.retrieval import ENGLISH_STOP_WORDS as OUR_STOP_WORDS, N_FEATURES, _hash_feature

    terms = ["muscl weak", "myasthenia", "guillain barr", "ёлка", "😀", "", "a" * 1000, "x"]
    terms += [f"t{i}" for i in range(2000)]
    assert [_hash_feature(t) for t in terms] == [abs(murmurhash3_32(t, seed=0)) % N_FEATURES for t in terms]
    assert OUR_STOP_WORDS == ENGLISH_STOP_WORDS


def test_example_questions_are_read_once_and_kept_with_the_index(tmp_path: Path, monkeypatch) -> None:
    state = load_or_build_index(CORPUS_DIR, cache_root=tmp_path / "cache")
    first = Retriever(state=state)
    saved = list(state.cache_folder.glob("example-terms-*.json"))
    assert len(saved) == 1 and len(first.examples) > 100
    # A second start reads no example question again, and ranks the same.
    monkeypatch.setattr(Retriever, "analyse", lambda self, q: (_ for _ in ()).throw(AssertionError(q)))
    second = Retriever(state=load_or_build_index(CORPUS_DIR, cache_root=tmp_path / "cache"))
    assert second.examples.questions == first.examples.questions
    monkeypatch.undo()
    question = "my legs feel like jelly after walking"
    assert [h.passage.id for h in second.search(question).hits] == [h.passage.id for h in first.search(question).hits]
    # Other synonyms read questions differently: their own file. A damaged file is read again, quietly.
    Retriever(state=state, synonyms={"jelly": "weakness"})
    assert len(list(state.cache_folder.glob("example-terms-*.json"))) == 2
    saved[0].write_text("{not json", encoding="utf-8")
    assert len(Retriever(state=state).examples) == len(first.examples)
    assert saved[0].read_text(encoding="utf-8").startswith("{\"")  # written again
