"""A persisted index: passages as JSON, arrays and sparse matrices as .npz, never pickle.

The cache key is a hash of every corpus file's path and bytes plus the index settings, so any
change to the corpus (or to the analyzer, synonyms or parameters) builds a fresh index.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from bot.corpus import Passage, list_corpus_files, load_passages
from bot.retrieval import IndexState, build_index_state

log = logging.getLogger(__name__)

CACHE_DIR_VARIABLE = "BOT_CACHE_DIR"
FORMAT_VERSION = 1


def default_cache_root() -> Path:
    configured = os.environ.get(CACHE_DIR_VARIABLE, "").strip()
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "muscle-weakness-bot"


def corpus_fingerprint(corpus_dir: Path | str, settings: str) -> str:
    """Hash of the corpus files (names and bytes) and the index settings."""
    folder = Path(corpus_dir)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"v{FORMAT_VERSION}\0{settings}\0".encode())
    for path in list_corpus_files(folder):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        try:
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError:
            digest.update(b"<unreadable>")
        digest.update(b"\0")
    return digest.hexdigest()


def save_index(
    folder: Path,
    passages: list[Passage],
    arrays: dict[str, np.ndarray],
    matrices: dict[str, sp.spmatrix],
    meta: dict,
) -> None:
    """Write the index atomically: a temporary folder renamed into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    try:
        (staging / "passages.json").write_text(
            json.dumps([asdict(p) for p in passages], ensure_ascii=False), encoding="utf-8"
        )
        (staging / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        np.savez(staging / "arrays.npz", **arrays)
        for name, matrix in matrices.items():
            sp.save_npz(staging / f"{name}.npz", matrix, compressed=False)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_index(folder: Path, matrix_names: tuple[str, ...]) -> tuple[list[Passage], dict, dict, dict] | None:
    """The saved index, or None (with a warning when it exists but is damaged)."""
    if not (folder / "meta.json").is_file():
        return None
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        rows = json.loads((folder / "passages.json").read_text(encoding="utf-8"))
        passages = [
            Passage(r["id"], r["source"], r["section"], r["text"], tuple(r.get("also_in", ()))) for r in rows
        ]
        with np.load(folder / "arrays.npz", allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        matrices = {name: sp.load_npz(folder / f"{name}.npz") for name in matrix_names}
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("ignoring a damaged index cache in %s (%s); rebuilding it", folder, error)
        return None
    return passages, arrays, matrices, meta


def index_settings() -> str:
    """What, besides the corpus, decides the index: the index version and the code that builds it."""
    from bot import classifiers, corpus, examples, retrieval, text

    digest = hashlib.blake2b(digest_size=8)
    # (the example questions' analysed terms and the classifiers fitted on them are cached there too)
    for module in (corpus, retrieval, text, examples, classifiers):
        digest.update(Path(module.__file__).read_bytes())
    # The analyzer's word table (possibly replaced through BOT_DATA_DIR) shapes the index too.
    # Data files that shape the index (possibly replaced through BOT_DATA_DIR) count too.
    for name in ("lemmas.toml", "english_words.toml", "domain.toml"):
        digest.update(retrieval.read_data_file(name)[1].encode())
    return f"{retrieval.INDEX_VERSION}/{digest.hexdigest()}"


def state_to_files(state: IndexState) -> tuple[dict, dict, dict]:
    arrays = {"idf": state.idf}
    matrices = {"columns": state.columns}
    meta = {
        "format": FORMAT_VERSION,
        "corpus_words": state.corpus_words,
        "corpus_stems": state.corpus_stems,
        "jargon_stems": state.jargon_stems,
    }
    return arrays, matrices, meta


def load_or_build_index(
    corpus_dir: Path | str, cache_root: Path | None = None, progress: Callable[[str, int, int], None] | None = None
) -> IndexState:
    """The index for a corpus folder: from the cache when the corpus is unchanged, else built and saved."""
    key = corpus_fingerprint(corpus_dir, index_settings())
    folder = (cache_root or default_cache_root()) / key
    loaded = load_index(folder, ("columns",))
    if loaded is not None:
        passages, arrays, matrices, meta = loaded
        try:
            return IndexState(
                passages=passages,
                idf=arrays["idf"],
                columns=matrices["columns"].tocsc(),
                corpus_words=list(meta["corpus_words"]),
                corpus_stems=list(meta["corpus_stems"]),
                jargon_stems=list(meta["jargon_stems"]),
                cache_folder=folder,
            )
        except (KeyError, TypeError) as error:
            log.warning("ignoring an incomplete index cache in %s (%s); rebuilding it", folder, error)
    passages = load_passages(corpus_dir)
    total = len(passages)
    done = 0

    def step(count: int) -> None:
        nonlocal done
        done += count
        if progress:
            progress("indexing", done, total)

    state = build_index_state(passages, progress=step)
    try:
        save_index(folder, state.passages, *state_to_files(state))
    except OSError as error:
        log.warning("could not save the index cache in %s (%s); it will be rebuilt next time", folder, error)
        return state
    return replace(state, cache_folder=folder)
