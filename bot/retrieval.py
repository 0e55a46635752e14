"""TF-IDF index over passages, with typo correction and lay-synonym expansion of queries."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import snowballstemmer
from rapidfuzz import fuzz, process
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, HashingVectorizer, TfidfTransformer
from sklearn.utils import murmurhash3_32

from bot.corpus import CorpusError, Passage
from bot.text import fold, words

# Words that carry meaning for symptoms even though sklearn lists them as stop words.
KEPT_STOP_WORDS = frozenset({"back", "side", "fire", "move", "full"})
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS) - KEPT_STOP_WORDS
MIN_CORRECTABLE_LENGTH = 4
SHORT_WORD_LENGTH = 5
TYPO_CUTOFF = 80.0
SHORT_WORD_TYPO_CUTOFF = 85.0
# A folder whose .toml files replace the bundled ones of the same name (synonyms, red flags, messages).
DATA_DIR_VARIABLE = "BOT_DATA_DIR"
# Index features are hashed into this many columns: no vocabulary in memory, collisions negligible.
N_FEATURES = 2**21
INDEX_BATCH = 2000
# Changes whenever the analyzer or the index layout changes, so old caches are not reused.
INDEX_VERSION = f"stems+pairs/{N_FEATURES}/v1"


class DataFileError(Exception):
    """A data file (lexicon, synonyms) is missing or malformed; the message names it."""


@dataclass(frozen=True)
class QueryAnalysis:
    """How a question was read: its words, typo corrections and synonym expansions."""

    words: tuple[str, ...]
    corrections: dict[str, str] = field(default_factory=dict)
    expansions: tuple[str, ...] = ()

    @property
    def search_text(self) -> str:
        return " ".join((*self.words, *self.expansions))


@dataclass(frozen=True)
class Hit:
    passage: Passage
    score: float
    matched_terms: tuple[str, ...]


@dataclass(frozen=True)
class SearchResult:
    query: QueryAnalysis
    hits: tuple[Hit, ...]

    @property
    def best_score(self) -> float:
        return self.hits[0].score if self.hits else 0.0


def load_toml(name_or_path: str | Path) -> dict:
    """Load a TOML data file: a bare name is read from BOT_DATA_DIR if it has it, else the package."""
    override_dir = os.environ.get(DATA_DIR_VARIABLE, "").strip()
    if override_dir and isinstance(name_or_path, str) and "/" not in name_or_path:
        if (Path(override_dir) / name_or_path).is_file():
            name_or_path = Path(override_dir) / name_or_path
    try:
        if isinstance(name_or_path, Path) or "/" in str(name_or_path):
            path = Path(name_or_path)
            label = str(path)
            raw = path.read_text(encoding="utf-8")
        else:
            label = f"bot/data/{name_or_path}"
            raw = resources.files("bot.data").joinpath(name_or_path).read_text(encoding="utf-8")
        return tomllib.loads(raw)
    except FileNotFoundError:
        raise DataFileError(f"data file {label} is missing") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataFileError(f"data file {label} cannot be read: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise DataFileError(f"data file {label} is not valid TOML: {error}") from None


def load_synonyms(source: str | Path = "synonyms.toml") -> dict[str, str]:
    """Lay phrase → corpus terms, folded; longest phrases first so they win over their parts."""
    data = load_toml(source)
    table = data.get("synonyms")
    if not isinstance(table, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in table.items()
    ):
        raise DataFileError(f"data file {source}: [synonyms] must map phrases to strings of terms")
    folded = {" ".join(words(k)): " ".join(words(v)) for k, v in table.items() if words(k)}
    return dict(sorted(folded.items(), key=lambda item: -len(item[0])))


class Analyzer:
    """Folded, stop-word-free, stemmed words plus their bigrams."""

    def __init__(self) -> None:
        self._stemmer = snowballstemmer.stemmer("english")

    @lru_cache(maxsize=65536)
    def stem(self, word: str) -> str:
        return self._stemmer.stemWord(word)

    def stems(self, text: str) -> list[str]:
        return [self.stem(w) for w in words(text) if w not in STOP_WORDS and len(w) > 1]

    def __call__(self, text: str) -> list[str]:
        stems = self.stems(text)
        return stems + [f"{a} {b}" for a, b in zip(stems, stems[1:])]


@dataclass(frozen=True)
class IndexState:
    """Everything a fitted index needs, in forms that save as JSON and .npz (no pickle)."""

    passages: list[Passage]
    idf: np.ndarray  # float32 per hashed feature
    columns: sp.csc_matrix  # passages × features, rows L2-normalised, column-major for fast queries
    corpus_words: list[str]  # folded words of the corpus, for typo correction
    corpus_stems: list[str]


def _hash_feature(term: str) -> int:
    """The column of a term: the same hash HashingVectorizer uses."""
    return abs(murmurhash3_32(term, seed=0)) % N_FEATURES


def build_index_state(passages: list[Passage], progress: Callable[[int], None] | None = None) -> IndexState:
    """Fit TF-IDF over hashed stem and stem-pair features (no vocabulary held in memory)."""
    if not passages:
        raise ValueError("no passages to index")
    analyzer = Analyzer()
    hasher = HashingVectorizer(
        analyzer=analyzer, n_features=N_FEATURES, alternate_sign=False, norm=None, dtype=np.float32
    )
    blocks = []
    for start in range(0, len(passages), INDEX_BATCH):
        batch = passages[start : start + INDEX_BATCH]
        blocks.append(hasher.transform([p.search_text() for p in batch]))
        if progress:
            progress(len(batch))
    counts = sp.vstack(blocks).tocsr()
    if counts.nnz == 0:
        raise CorpusError("the corpus has no words to index (only stop words, numbers or symbols)")
    transformer = TfidfTransformer(sublinear_tf=True)
    matrix = transformer.fit_transform(counts).astype(np.float32)
    corpus_words: set[str] = set()
    for passage in passages:
        corpus_words.update(words(passage.search_text()))
    stems = {analyzer.stem(w) for w in corpus_words if w not in STOP_WORDS}
    return IndexState(
        passages=passages,
        idf=transformer.idf_.astype(np.float32),
        columns=matrix.tocsc(),
        corpus_words=sorted(corpus_words),
        corpus_stems=sorted(stems),
    )


class Retriever:
    """Ranks passages for a question by cosine similarity of TF-IDF vectors."""

    def __init__(
        self,
        passages: list[Passage] | None = None,
        synonyms: dict[str, str] | None = None,
        *,
        state: IndexState | None = None,
    ) -> None:
        if state is None:
            if not passages:
                raise ValueError("no passages to index")
            state = build_index_state(passages)
        self.state = state
        self.passages = state.passages
        self.synonyms = synonyms if synonyms is not None else load_synonyms()
        self.analyzer = Analyzer()
        self.idf = state.idf
        self.columns = state.columns
        self.known_stems = frozenset(state.corpus_stems)
        self.known_words = set(state.corpus_words)
        for phrase in self.synonyms:
            self.known_words.update(phrase.split())
        self._words_by_initial: dict[str, list[str]] = {}
        for word in sorted(self.known_words):
            self._words_by_initial.setdefault(word[:1], []).append(word)

    def analyse(self, question: str) -> QueryAnalysis:
        original = words(question)
        corrections: dict[str, str] = {}
        corrected = []
        for word in original:
            fixed = self.correct(word)
            if fixed != word:
                corrections[word] = fixed
            corrected.append(fixed)
        return QueryAnalysis(tuple(corrected), corrections, self.expand(corrected))

    def correct(self, word: str) -> str:
        """The corpus word a misspelt query word most likely means, or the word itself."""
        if (
            len(word) < MIN_CORRECTABLE_LENGTH
            or word in STOP_WORDS
            or word in self.known_words
            or word.isdigit()
            or self.analyzer.stem(word) in self.known_stems
        ):
            return word
        cutoff = SHORT_WORD_TYPO_CUTOFF if len(word) <= SHORT_WORD_LENGTH else TYPO_CUTOFF
        # Typos rarely change the first letter; comparing within it keeps large corpora fast.
        candidates = self._words_by_initial.get(word[:1], [])
        match = process.extractOne(word, candidates, scorer=fuzz.ratio, score_cutoff=cutoff)
        return match[0] if match else word

    def expand(self, query_words: list[str]) -> tuple[str, ...]:
        """Corpus terms for the lay phrases found in the query."""
        text = f" {' '.join(query_words)} "
        found: list[str] = []
        for phrase, terms in self.synonyms.items():
            if f" {phrase} " in text:
                found.append(terms)
                text = text.replace(f" {phrase} ", " | ")
        return tuple(" ".join(found).split())

    def query_vector(self, text: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Columns and L2-normalised TF-IDF weights of a query, and its terms (sublinear tf, as the index)."""
        counts: dict[str, int] = {}
        for term in self.analyzer(text):
            counts[term] = counts.get(term, 0) + 1
        if not counts:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), []
        terms = list(counts)
        columns = np.fromiter((_hash_feature(t) for t in terms), dtype=np.int64, count=len(terms))
        tf = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float32, count=len(terms)))
        weights = tf * self.idf[columns]
        norm = float(np.linalg.norm(weights))
        return columns, (weights / norm if norm else weights), terms

    def search(self, question: str, limit: int = 3) -> SearchResult:
        query = self.analyse(question)
        columns, weights, terms = self.query_vector(query.search_text)
        if not len(columns):
            return SearchResult(query, ())
        scores = np.asarray(self.columns[:, columns] @ weights).ravel()
        candidates = np.flatnonzero(scores > 0)
        if not len(candidates):
            return SearchResult(query, ())
        if len(candidates) > limit:
            candidates = candidates[np.argpartition(-scores[candidates], limit - 1)[:limit]]
        order = candidates[np.lexsort((candidates, -scores[candidates]))]
        hits = tuple(
            Hit(self.passages[i], float(scores[i]), self._matched_terms(i, columns, terms)) for i in order
        )
        return SearchResult(query, hits)

    def _matched_terms(self, row: int, columns: np.ndarray, terms: list[str]) -> tuple[str, ...]:
        """The query terms that occur in one passage."""
        found = []
        for column, term in zip(columns, terms):
            start, end = self.columns.indptr[column], self.columns.indptr[column + 1]
            rows = self.columns.indices[start:end]
            position = np.searchsorted(rows, row)
            if position < len(rows) and rows[position] == row:
                found.append(term)
        return tuple(sorted(set(found)))


def section_suggestions(passages: list[Passage], exclude: str | None = None, limit: int = 5) -> list[str]:
    """A few section titles that show what the corpus covers."""
    titles = [t for t in dict.fromkeys(p.section for p in passages) if t != exclude]
    questions = [t for t in titles if t.endswith("?")]
    topics = [t for t in titles if not t.endswith("?")]
    picked = (topics + questions)[:limit]
    return [re.sub(r"\s+", " ", t) for t in picked]
