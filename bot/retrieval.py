"""TF-IDF index over passages, with typo correction and lay-synonym expansion of queries."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import snowballstemmer
from rapidfuzz import fuzz, process
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

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


class Retriever:
    """Ranks passages for a question by cosine similarity of TF-IDF vectors."""

    def __init__(self, passages: list[Passage], synonyms: dict[str, str] | None = None) -> None:
        if not passages:
            raise ValueError("no passages to index")
        self.passages = passages
        self.synonyms = synonyms if synonyms is not None else load_synonyms()
        self.analyzer = Analyzer()
        self.vectorizer = TfidfVectorizer(
            analyzer=self.analyzer, sublinear_tf=True, dtype=np.float32
        )
        try:
            self.matrix = self.vectorizer.fit_transform(p.search_text() for p in passages)
        except ValueError:  # nothing but stop words, numbers or symbols
            raise CorpusError("the corpus has no words to index (only stop words, numbers or symbols)") from None
        self.vocabulary = self.vectorizer.vocabulary_
        self._feature_names = self.vectorizer.get_feature_names_out()
        self.known_words = self._known_words()
        self._known_word_list = sorted(self.known_words)

    def _known_words(self) -> set[str]:
        """Every folded word of the corpus and of the synonym phrases: what typos are corrected to."""
        known: set[str] = set()
        for passage in self.passages:
            known.update(words(passage.search_text()))
        for phrase in self.synonyms:
            known.update(phrase.split())
        return known

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
            or self.analyzer.stem(word) in self.vocabulary
        ):
            return word
        cutoff = SHORT_WORD_TYPO_CUTOFF if len(word) <= SHORT_WORD_LENGTH else TYPO_CUTOFF
        match = process.extractOne(word, self._known_word_list, scorer=fuzz.ratio, score_cutoff=cutoff)
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

    def search(self, question: str, limit: int = 3) -> SearchResult:
        query = self.analyse(question)
        vector = self.vectorizer.transform([query.search_text])
        if vector.nnz == 0:
            return SearchResult(query, ())
        scores = (self.matrix @ vector.T).toarray().ravel()
        order = np.argsort(-scores, kind="stable")[:limit]
        query_terms = set(self.analyzer(query.search_text))
        hits = tuple(
            Hit(self.passages[i], float(scores[i]), self._matched_terms(i, query_terms))
            for i in order
            if scores[i] > 0
        )
        return SearchResult(query, hits)

    def _matched_terms(self, index: int, query_terms: set[str]) -> tuple[str, ...]:
        row = self.matrix.getrow(index)
        return tuple(sorted(t for t in (self._feature_names[j] for j in row.indices) if t in query_terms))


def section_suggestions(passages: list[Passage], exclude: str | None = None, limit: int = 5) -> list[str]:
    """A few section titles that show what the corpus covers."""
    titles = [t for t in dict.fromkeys(p.section for p in passages) if t != exclude]
    questions = [t for t in titles if t.endswith("?")]
    topics = [t for t in titles if not t.endswith("?")]
    picked = (topics + questions)[:limit]
    return [re.sub(r"\s+", " ", t) for t in picked]
