"""TF-IDF index over passages, with typo correction and lay-synonym expansion of queries."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import mmh3
import numpy as np
import scipy.sparse as sp
import snowballstemmer
from rapidfuzz import fuzz, process
from rapidfuzz.distance import JaroWinkler

from bot.classifiers import ExampleModels, spelling_pieces
from bot.corpus import CorpusError, Passage
from bot.examples import EXAMPLES_FILE, Example, ExampleFileError, ExampleIndex, parse_examples
from bot.text import fold, words

log = logging.getLogger(__name__)

# scikit-learn's English stop words, read from a data file: importing scikit-learn takes most of a
# second, and answering from a cached index needs nothing else from it (building does, see below).
ENGLISH_STOP_WORDS = frozenset(
    tomllib.loads(resources.files("bot.data").joinpath("stop_words.toml").read_text(encoding="utf-8"))["words"].split()
)
# Words that carry meaning for symptoms even though sklearn lists them as stop words.
KEPT_STOP_WORDS = frozenset({"back", "side", "fire", "move", "full", "system", "part", "thin", "top", "bottom", "front"})
# Chat filler that sklearn does not list but that says nothing about the topic.
CHAT_STOP_WORDS = frozenset(
    "does did doing just really want wants know gets got getting make makes thing things lot lots bit "
    "im ive dont doesnt didnt wont yes ok okay hi hello thanks thank somebody maybe pretty quite kind "
    "sort guess think wondering wonder tell say said worried worry scared bot doc".split()
)
STOP_WORDS = (frozenset(ENGLISH_STOP_WORDS) | CHAT_STOP_WORDS) - KEPT_STOP_WORDS
MIN_CORRECTABLE_LENGTH = 4
SHORT_WORD_LENGTH = 5
TYPO_CUTOFF = 80.0
SHORT_WORD_TYPO_CUTOFF = 85.0
LONG_WORD_LENGTH = 7
LONG_WORD_JW_CUTOFF = 0.9
# Dictation splits long medical words ("poly myo sitis"): up to this many pieces are put back together,
# when together they have at least this many letters.
MAX_JOINED_PIECES = 3
MIN_JOINED_LENGTH = 6
MAX_JOINED_LENGTH_DIFFERENCE = 2
MIN_FUZZY_PIECE_LENGTH = 3
MAX_REMEMBERED_CORRECTIONS = 100_000
# How many of the best-scoring passages the re-ranking step looks at (6 ranks the dev split as well as
# 10 did, at less cost per answer).
RERANK_DEPTH = 6
MAX_PASSAGE_FACTS = 4096  # passages whose re-ranking facts are kept (see Retriever._passage_facts)
# Re-ranking weights: share of the question's words the passage (or its section title) contains.
COVERAGE_WEIGHT = 0.45
TITLE_WEIGHT = 0.08
# A question that is just a section's title ("muscle weakness", "nerve compression") wants that section
# (large enough to outweigh the passage classifiers' support; dev ranking is the same from 0.05 to 1.0).
TITLE_EXACT_BOOST = 0.3
# "What is X?" prefers the passage that defines X ("X is ...", "X - ...").
DEFINITION_BOOST = 0.05
DEFINITION_CUES = frozenset({"what", "whats", "what's", "define", "meaning"})
# Share of passages a word pair may appear in and still anchor a question (see _has_corpus_phrase).
PHRASE_ANCHOR_SHARE = 0.05
# Weight of the similarity to the closest example question (bot/data/example_questions.jsonl).
EXAMPLE_WEIGHT = 1.5
# Weight of the passage classifier's support (0 to 1, bot.classifiers) for a candidate passage...
PASSAGE_CLASSIFIER_WEIGHT = 0.8
# ... and of the one that reads the question's spelling (cross-validated dev top-1 0.926 -> 0.959).
SPELLING_CLASSIFIER_WEIGHT = 2.0
# A folder whose .toml files replace the bundled ones of the same name (synonyms, red flags, messages).
DATA_DIR_VARIABLE = "BOT_DATA_DIR"
# Analysed example questions, and the classifiers fitted on them, are kept in the index's cache
# folder, one file each per reading of questions.
EXAMPLE_TERMS_PREFIX = "example-terms-"
EXAMPLE_MODELS_PREFIX = "example-models-"
# Classifiers fitted in this process, by the fingerprint of their example questions (cross-validation
# fits one per fold; each is fitted once).
MAX_REMEMBERED_MODELS = 8
_FITTED_MODELS: dict[str, ExampleModels] = {}
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

    intents: tuple[str, ...] = ()
    anchored: bool = True
    # (lay word, corpus term) pairs: a passage with the corpus term covers the lay word.
    stand_ins: tuple[tuple[str, str], ...] = ()

    @property
    def search_text(self) -> str:
        return " ".join((*self.words, *self.expansions))


@dataclass(frozen=True)
class Hit:
    passage: Passage
    score: float
    matched_terms: tuple[str, ...]
    coverage: float = 0.0  # IDF-weighted share of the question's own words found in the passage
    example: str | None = None  # the closest example question that points at this passage
    example_similarity: float = 0.0  # its cosine similarity to the question
    classifier_score: float = 0.0  # the passage classifiers' weighted support, part of the score
    unexplained: float = 0.0  # share of the question's words neither the passage nor its example questions use


@dataclass(frozen=True)
class SearchResult:
    query: QueryAnalysis
    hits: tuple[Hit, ...]
    terms: tuple[str, ...] = ()  # the analysed (stemmed) terms the question was searched with

    @property
    def best_score(self) -> float:
        """How well the best passage matches by words and example questions (the classifiers' support
        ranks passages but does not count here)."""
        return self.hits[0].score - self.hits[0].classifier_score if self.hits else 0.0


def read_data_file(name_or_path: str | Path) -> tuple[str, str]:
    """(label, text) of a data file: a bare name is read from BOT_DATA_DIR if it has it, else the package."""
    override_dir = os.environ.get(DATA_DIR_VARIABLE, "").strip()
    if override_dir and isinstance(name_or_path, str) and "/" not in name_or_path:
        if (Path(override_dir) / name_or_path).is_file():
            name_or_path = Path(override_dir) / name_or_path
    if isinstance(name_or_path, Path) or "/" in str(name_or_path):
        label = str(name_or_path)
        reader = Path(name_or_path)
    else:
        label = f"bot/data/{name_or_path}"
        reader = resources.files("bot.data").joinpath(name_or_path)
    try:
        return label, reader.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFileError(f"data file {label} is missing") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataFileError(f"data file {label} cannot be read: {error}") from None


def load_toml(name_or_path: str | Path) -> dict:
    """Load a TOML data file (see read_data_file for where it is looked for)."""
    return load_labelled_toml(name_or_path)[1]


def load_labelled_toml(name_or_path: str | Path) -> tuple[str, dict]:
    """(label, data) of a TOML data file: the label names the file actually read, for error messages."""
    label, raw = read_data_file(name_or_path)
    try:
        return label, tomllib.loads(raw)
    except tomllib.TOMLDecodeError as error:
        raise DataFileError(f"data file {label} is not valid TOML: {error}") from None


def load_synonyms(source: str | Path = "synonyms.toml", data: dict | None = None) -> dict[str, str]:
    """Lay phrase → corpus terms, folded; longest phrases first so they win over their parts."""
    data = load_toml(source) if data is None else data
    table = data.get("synonyms")
    if not isinstance(table, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in table.items()
    ):
        raise DataFileError(f"data file {source}: [synonyms] must map phrases to strings of terms")
    folded = {" ".join(words(k)): " ".join(words(v)) for k, v in table.items() if words(k)}
    return dict(sorted(folded.items(), key=lambda item: -len(item[0])))


def load_examples(source: str | Path = EXAMPLES_FILE) -> list[Example]:
    """Example questions with the phrase of the passage that answers each (see bot.examples)."""
    label, raw = read_data_file(source)
    try:
        return parse_examples(raw, label)
    except ExampleFileError as error:
        raise DataFileError(f"data file {error}") from None


def load_shorthand(source: str | Path = "synonyms.toml", data: dict | None = None) -> dict[str, str]:
    """Chat shorthand → the word it stands for ("y" → "why", "ppl" → "people"), from [shorthand]."""
    table = (load_toml(source) if data is None else data).get("shorthand", {})
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
        raise DataFileError(f"data file {source}: [shorthand] must map words to words")
    return {fold(k): " ".join(words(v)) for k, v in table.items()}


def load_english_words(source: str | Path = "english_words.toml") -> frozenset[str]:
    """Real English words: typo correction never changes these into corpus words."""
    data = load_toml(source)
    if not isinstance(data.get("words"), str):
        raise DataFileError(f"data file {source}: `words` must be a string of words")
    text = data["words"]
    # The bundled list is plain lowercase ASCII: split it directly (folding 300 kB costs ~0.15 s).
    return frozenset(text.split() if text.isascii() and text.islower() else words(text))


@dataclass(frozen=True)
class Intent:
    name: str
    cues: frozenset[str]
    sections: tuple[str, ...]
    boost: float
    # Words that mark a passage's own text as serving the intent ("surgery" for treatment), and its boost.
    passage_words: str = ""
    passage_boost: float = 0.0


@dataclass(frozen=True)
class Domain:
    """Anchor words (what the bot is about) and intent cues, from bot/data/domain.toml."""

    anchors: frozenset[str]
    intents: tuple[Intent, ...]
    jargon_min_length: int = 7
    not_anchors: frozenset[str] = frozenset()


def load_domain(source: str | Path = "domain.toml") -> Domain:
    data = load_toml(source)
    try:
        anchors = frozenset(words(data["anchors"]))
        intents = tuple(
            Intent(str(i["name"]), frozenset(fold(c) for c in i["cues"]),
                   tuple(" ".join(words(t)) for t in i["sections"]), float(i["boost"]),
                   str(i.get("passage_words", "")), float(i.get("passage_boost", 0.0)))
            for i in data.get("intents", [])
        )
    except (KeyError, TypeError, ValueError):
        raise DataFileError(
            f"data file {source}: needs `anchors` (a string) and [[intents]] with name, cues, sections, boost"
        ) from None
    jargon = data.get("jargon", {})
    if not isinstance(jargon, dict) or not isinstance(jargon.get("not_anchors", ""), str):
        raise DataFileError(f"data file {source}: [jargon] needs min_length and not_anchors (a string)")
    return Domain(anchors, intents, int(jargon.get("min_length", 7)), frozenset(words(jargon.get("not_anchors", ""))))


CLITIC_RE = re.compile(r"'(?:s|m|re|ve|ll|d)$")


def content_words(tokens: list[str] | tuple[str, ...]) -> list[str]:
    """Tokens without stop words, one-letter words and clitics ("i'm" → "i", dropped; "doctor's" → "doctor")."""
    kept = []
    for token in tokens:
        if "'" in token:
            token = CLITIC_RE.sub("", token)
        if token not in STOP_WORDS and len(token) > 1:
            kept.append(token)
    return kept


BRITISH_ISE_RE = re.compile(r"is(e|ed|es|ing|ation|ations)$")


@lru_cache(maxsize=65536)
def _american(word: str) -> str:
    """British -ise spellings as -ize ("paralysed" stays, "generalised" → "generalized"), on both sides."""
    return BRITISH_ISE_RE.sub(r"iz\1", word) if len(word) > 6 else word


def load_lemmas(source: str | Path = "lemmas.toml") -> dict[str, str]:
    """Word → the form it is indexed as, for words the stemmer leaves apart ("diagnosis" → "diagnose")."""
    table = load_toml(source).get("lemmas")
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise DataFileError(f"data file {source}: [lemmas] must map words to words")
    return {fold(k): fold(v) for k, v in table.items()}


class Analyzer:
    """Folded, stop-word-free, stemmed words plus their bigrams."""

    def __init__(self, lemmas: dict[str, str] | None = None) -> None:
        self._stemmer = snowballstemmer.stemmer("english")
        self.lemmas = lemmas if lemmas is not None else load_lemmas()

    @lru_cache(maxsize=65536)
    def stem(self, word: str) -> str:
        return self._stemmer.stemWord(word)

    def stems(self, text: str) -> list[str]:
        lemmas = self.lemmas
        return [self.stem(lemmas.get(w) or _american(w)) for w in content_words(words(text))]

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
    jargon_stems: list[str]  # stems of corpus words that are not everyday English: they anchor a question
    cache_folder: Path | None = field(default=None, compare=False)  # where the index is cached, if it is


def _hash_feature(term: str) -> int:
    """The column of a term: the same signed 32-bit MurmurHash3 of its UTF-8 that HashingVectorizer uses."""
    return abs(mmh3.hash(term, 0, signed=True)) % N_FEATURES


def build_index_state(passages: list[Passage], progress: Callable[[int], None] | None = None) -> IndexState:
    """Fit TF-IDF over hashed stem and stem-pair features (no vocabulary held in memory)."""
    if not passages:
        raise ValueError("no passages to index")
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

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
    word_stems = {w: analyzer.stem(w) for w in corpus_words if w not in STOP_WORDS}
    return IndexState(
        passages=passages,
        idf=transformer.idf_.astype(np.float32),
        columns=matrix.tocsc(),
        corpus_words=sorted(corpus_words),
        corpus_stems=sorted(set(word_stems.values())),
        jargon_stems=sorted(jargon_stems(word_stems, load_english_words(), load_domain())),
    )


def _positions_in(sorted_rows: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of `rows`: its index in `sorted_rows` (a binary search), and whether it is there at all."""
    if not len(sorted_rows):
        return np.zeros(len(rows), dtype=np.int64), np.zeros(len(rows), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_rows, rows), len(sorted_rows) - 1)
    return at, sorted_rows[at] == rows


def _write_atomically(path: Path | None, write: Callable[[Path], None]) -> None:
    """Write a cache file through a staging file of its own, then swap it in: a reader (or another
    process saving the same file) never sees half of it. A failure is only a warning."""
    if path is None:
        return
    staging = None
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(handle)
        staging = Path(name)
        write(staging)
        staging.replace(path)
    except OSError as error:
        log.warning("could not save %s in %s (%s)", path.name, path.parent, error)
        if staging is not None:
            staging.unlink(missing_ok=True)


def _contains(postings: list[np.ndarray], rows: np.ndarray, n_rows: int) -> np.ndarray:
    """(rows × postings) booleans: whether each row is in each sorted posting list. One binary search
    over all the lists at once, each list's rows offset by its number times the row count."""
    if not postings:
        return np.zeros((len(rows), 0), dtype=bool)
    numbers = np.arange(len(postings), dtype=np.int64) * n_rows
    keys = np.concatenate(postings).astype(np.int64) + np.repeat(numbers, [len(p) for p in postings])
    wanted = rows.astype(np.int64)[:, np.newaxis] + numbers[np.newaxis, :]
    if not len(keys):
        return np.zeros(wanted.shape, dtype=bool)
    return keys[np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)] == wanted


def _by_initial(words_: frozenset[str] | set[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for word in sorted(words_):
        grouped.setdefault(word[:1], []).append(word)
    return grouped


def jargon_stems(word_stems: dict[str, str], english_words: frozenset[str], domain: Domain) -> set[str]:
    """Stems of corpus words that are not everyday English ("proserin", "osteophytes")."""
    return {
        stem
        for word, stem in word_stems.items()
        if len(word) >= domain.jargon_min_length and word.isalpha()
        and word not in english_words and word not in domain.not_anchors
    }


def _join_kind(word: str, shorthand: dict[str, str]) -> str | None:
    """What a query word can be a piece of (see Retriever.rejoin): "letter" (a word spelt out), "piece"
    (a split word: 2+ letters, no stop word or chat shorthand), or None."""
    if not word.isalpha():
        return None
    if len(word) == 1:
        return "letter"
    return None if word in STOP_WORDS or word in shorthand else "piece"


class Retriever:
    """Ranks passages for a question by cosine similarity of TF-IDF vectors."""

    def __init__(
        self,
        passages: list[Passage] | None = None,
        synonyms: dict[str, str] | None = None,
        *,
        state: IndexState | None = None,
        examples: list[Example] | None = None,
    ) -> None:
        if state is None:
            if not passages:
                raise ValueError("no passages to index")
            state = build_index_state(passages)
        self.state = state
        self.passages = state.passages
        lay_language = load_toml("synonyms.toml")  # read once: the synonyms and the chat shorthand
        self.synonyms = synonyms if synonyms is not None else load_synonyms(data=lay_language)
        self.shorthand = load_shorthand(data=lay_language)
        # How questions are read depends on the index (cached under its own key) and on these tables.
        self._reading_key = hashlib.blake2b(
            json.dumps([self.synonyms, self.shorthand], sort_keys=True).encode(), digest_size=8
        ).hexdigest()
        self.analyzer = Analyzer()
        self.idf = state.idf
        self.columns = state.columns
        self.columns.sort_indices()  # search() binary-searches the posting lists
        # Smoothed IDF of a term no passage contains (df = 0), and the highest IDF of a real one (df = 1).
        n = len(state.passages)
        self._unseen_idf = np.float32(np.log(n + 1) + 1)
        self._max_seen_idf = float(np.log((n + 1) / 2) + 1)
        # A word pair in at most this share of the passages is a distinctive phrase of the corpus.
        self._phrase_anchor_idf = float(np.log((n + 1) / (max(1.0, PHRASE_ANCHOR_SHARE * n) + 1)) + 1)
        self.known_stems = frozenset(state.corpus_stems)
        self._corpus_words = frozenset(state.corpus_words)
        self.known_words = set(state.corpus_words)
        for phrase in self.synonyms:
            self.known_words.update(phrase.split())
        self._corpus_words_by_initial = _by_initial(self._corpus_words)
        self._known_words_by_initial = _by_initial(self.known_words)
        self._prepare_query_analysis()
        self._facts: dict[int, tuple[frozenset[str], frozenset[str], dict[str, float]]] = {}  # by id(passage)
        cached_terms = self._load_cached(EXAMPLE_TERMS_PREFIX)
        valid = isinstance(cached_terms, dict) and all(isinstance(v, list) for v in cached_terms.values())
        self._example_terms: dict[str, list[str]] = cached_terms if valid else {}
        known = len(self._example_terms)
        saved_models = self._load_example_models()
        if saved_models:
            _FITTED_MODELS[saved_models.fingerprint] = saved_models
        self.use_examples(load_examples() if examples is None else examples)
        if len(self._example_terms) > known:
            self._save_cached(EXAMPLE_TERMS_PREFIX, self._example_terms)
        if not saved_models or saved_models.fingerprint != self.example_models.fingerprint:
            self._save_example_models()

    def use_examples(self, examples: list[Example]) -> None:
        """Index these example questions (those that fit no passage of the corpus are left out) and fit
        the classifiers on them (bot.classifiers): fitted once per set of examples, then remembered."""
        self.example_list = list(examples)
        self.examples = ExampleIndex.build(self.example_list, self.passages, self.example_terms)
        # Off-topic examples count only next to on-topic ones: bundled ones say nothing of an operator's
        # corpus. (With too few on-topic ones to fit the classifiers, the model without examples is used,
        # and it gives this overlap no weight: it was fitted with no examples at all.)
        self.off_topic_examples = ExampleIndex.of_off_topic(self.example_list if len(self.examples) else [], self.example_terms)
        on_topic, rows = self.examples.questions, self.examples.rows.tolist()
        off_topic = [e.question for e in self.example_list if not e.on_topic]
        terms = [[self.example_terms(q) for q in on_topic], [self.example_terms(q) for q in off_topic]]
        fingerprint = hashlib.blake2b(json.dumps([on_topic, rows, off_topic, terms]).encode(), digest_size=16).hexdigest()
        models = _FITTED_MODELS.get(fingerprint)
        if models is None:
            models = ExampleModels.fit(fingerprint, on_topic, rows, off_topic, self.example_terms)
            while len(_FITTED_MODELS) >= MAX_REMEMBERED_MODELS:
                del _FITTED_MODELS[next(iter(_FITTED_MODELS))]
            _FITTED_MODELS[fingerprint] = models
        self.example_models = models
        self.topic = models.topic
        self.passage_classifier = models.passages
        self.spelling_classifier = models.spelling

    def example_terms(self, question: str) -> list[str]:
        """The terms a question is compared with the examples by: read as a query is read (remembered,
        and kept next to the cached index, so a start does not read every example question again)."""
        terms = self._example_terms.get(question)
        if terms is None:
            terms = self._example_terms[question] = self.analyzer(self.analyse(question).search_text)
        return terms

    def _cache_file(self, prefix: str, suffix: str = ".json") -> Path | None:
        folder = self.state.cache_folder
        return folder / f"{prefix}{self._reading_key}{suffix}" if folder else None

    def _load_example_models(self) -> ExampleModels | None:
        path = self._cache_file(EXAMPLE_MODELS_PREFIX, ".npz")
        try:
            return ExampleModels.load(path) if path and path.is_file() else None
        except (OSError, ValueError) as error:
            log.debug("fitting the example classifiers again: %s is unusable (%s)", path, error)
            return None

    def _save_example_models(self) -> None:
        _write_atomically(self._cache_file(EXAMPLE_MODELS_PREFIX, ".npz"), self.example_models.save)

    def _load_cached(self, prefix: str) -> Any:
        """What _save_cached kept next to the index under this prefix; None if nothing usable is there."""
        path = self._cache_file(prefix)
        try:
            return json.loads(path.read_text(encoding="utf-8")) if path and path.is_file() else None
        except (OSError, ValueError):
            return None  # unreadable or damaged: worked out again

    def _save_cached(self, prefix: str, data: object) -> None:
        text = json.dumps(data, ensure_ascii=False)
        _write_atomically(self._cache_file(prefix), lambda staging: staging.write_text(text, encoding="utf-8"))

    def _prepare_query_analysis(self) -> None:
        """Data for reading questions: real English words, stemmed synonyms, anchors, intents, IDF."""
        self.english_words = load_english_words()
        self.domain = load_domain()
        stem = self.analyzer.stem
        self._synonym_stems: dict[tuple[str, ...], str] = {}
        for phrase, terms in self.synonyms.items():
            self._synonym_stems.setdefault(tuple(stem(w) for w in phrase.split()), terms)
        self._longest_synonym = max((len(k) for k in self._synonym_stems), default=0)
        self._intent_stems = {i.name: frozenset(self.analyzer.stems(i.passage_words)) for i in self.domain.intents}
        # Corpus words that are not everyday English ("proserin", "osteophytes") anchor a question too.
        self.specialised_stems = frozenset(self.state.jargon_stems)
        self._anchor_stems = frozenset(stem(w) for w in self.domain.anchors) | self.specialised_stems
        self._corrections: dict[str, str] = {}  # correct() remembered: rejoin asks about the same pieces

    def analyse(self, question: str) -> QueryAnalysis:
        corrections: dict[str, str] = {}
        original = self.rejoin(words(question), corrections)
        corrected = []
        for word in original:
            if word in self.shorthand:  # read as meant, not reported as a typo
                corrected.extend(self.shorthand[word].split())
                continue
            fixed = self.correct(word)
            if fixed != word:
                corrections[word] = fixed
            corrected.append(fixed)
        stand_ins: list[tuple[str, str]] = []
        expansions = self.expand(corrected, stand_ins)
        stems = {self.analyzer.stem(w) for w in (*corrected, *expansions)}
        intents = tuple(i.name for i in self.domain.intents if i.cues & set(corrected))
        anchored = bool(stems & self._anchor_stems) or self._has_corpus_phrase(corrected)
        return QueryAnalysis(tuple(corrected), corrections, expansions, intents, anchored, tuple(stand_ins))

    def _has_corpus_phrase(self, query_words: list[str]) -> bool:
        """Whether two adjacent content words of the question are a phrase only a few passages use
        ("duck walk", "lemon balm", "high heels"): that ties a question to the corpus as an anchor word does."""
        stems = self.analyzer.stems(" ".join(query_words))
        pairs = [f"{a} {b}" for a, b in zip(stems, stems[1:])]
        return any(self._unseen_idf > self.idf[_hash_feature(pair)] >= self._phrase_anchor_idf for pair in pairs)

    def rejoin(self, query_words: list[str], corrections: dict[str, str] | None = None) -> list[str]:
        """Words that dictation or a phone keyboard split apart, put back together ("poly myo sitis",
        "para thyroid"): when together they spell, or nearly spell, a specialised corpus word and one of
        the pieces is no corpus word of its own ("back bone" stays two words); and single letters that
        spell an anchor word ("a l s").

        `corrections`, if given, receives each join ("poly myo sitis" → "polymyositis").
        """
        # What each word can be part of: a split word (2+ letters, no stop word) or a spelt-out one.
        kinds = [_join_kind(word, self.shorthand) for word in query_words]
        if not any(a is not None and a == b for a, b in zip(kinds, kinds[1:])):
            return list(query_words)  # the common case: no two neighbours could be pieces of one word
        joined_words: list[str] = []
        i = 0
        while i < len(query_words):
            # The join that spells its corpus word best wins ("pro serin" rather than "pro serin used").
            found = [
                (score, size, word)
                for size in range(2, min(MAX_JOINED_PIECES, len(query_words) - i) + 1)
                if kinds[i] is not None and all(kind == kinds[i] for kind in kinds[i + 1 : i + size])
                for word, score in [self._joined_word(query_words[i : i + size], kinds[i])]
                if word is not None
            ]
            if found:
                _, size, word = max(found)
                joined_words.append(word)
                if corrections is not None:
                    corrections[" ".join(query_words[i : i + size])] = word
                i += size
            else:
                joined_words.append(query_words[i])
                i += 1
        return joined_words

    def _joined_word(self, pieces: list[str], kind: str) -> tuple[str | None, float]:
        """The corpus word these pieces (all of this _join_kind) spell together, if they are a split
        one (see rejoin), and how closely they spell it (100: exactly)."""
        nothing = (None, 0.0)
        joined = "".join(pieces)
        if kind == "letter":  # an anchor spelt out: "a l s" (not "i m a", "t h e")
            spelt = len(joined) >= 3 and joined in self.known_words and self.analyzer.stem(joined) in self._anchor_stems
            return (joined, 100.0) if spelt else nothing
        if all(piece in self.known_words for piece in pieces) or len(joined) < MIN_JOINED_LENGTH:
            return nothing
        if joined in self.known_words:
            word, score = joined, 100.0
        else:
            # Nearly spelt: no piece is, or is a typo of, a corpus word of its own ("vertebrae lol",
            # "infection set"), not every piece is an English word, none is a scrap ("turn ur"), and
            # the join is about as long as the word it spells.
            if (
                any(len(piece) < MIN_FUZZY_PIECE_LENGTH for piece in pieces)
                or all(piece in self.english_words for piece in pieces)
                or any(self.analyzer.stem(piece) in self.known_stems for piece in pieces)
                or any(self.correct(piece) in self.known_words for piece in pieces)
            ):
                return nothing
            choices = self._corpus_words_by_initial.get(joined[:1], [])
            match = process.extractOne(joined, choices, scorer=fuzz.ratio, score_cutoff=TYPO_CUTOFF)
            if match is None or abs(len(match[0]) - len(joined)) > MAX_JOINED_LENGTH_DIFFERENCE:
                return nothing
            word, score = match[0], float(match[1])
        return (word, score) if self.analyzer.stem(word) in self.specialised_stems else nothing

    def correct(self, word: str) -> str:
        """The corpus word a misspelt query word most likely means, or the word itself.

        Only unknown words are corrected: a real English word ("weather") is never turned into a
        corpus word ("water").
        """
        known = self._corrections.get(word)
        if known is None:
            known = self._correction(word)
            if len(self._corrections) < MAX_REMEMBERED_CORRECTIONS:
                self._corrections[word] = known
        return known

    def _correction(self, word: str) -> str:
        if (
            len(word) < MIN_CORRECTABLE_LENGTH
            or word in STOP_WORDS
            or word in self.known_words
            or word in self.english_words
            or not word.isalpha()
            or self.analyzer.stem(word) in self.known_stems
        ):
            return word
        cutoff = SHORT_WORD_TYPO_CUTOFF if len(word) <= SHORT_WORD_LENGTH else TYPO_CUTOFF
        # Corpus words first, then the lay words of the synonym map (some are common misspellings).
        # Typos rarely change the first letter: comparing within it keeps large corpora fast.
        for by_initial in (self._corpus_words_by_initial, self._known_words_by_initial):
            choices = by_initial.get(word[:1], [])
            match = process.extractOne(word, choices, scorer=fuzz.ratio, score_cutoff=cutoff)
            if match is None and len(word) >= LONG_WORD_LENGTH:
                # Long medical words garbled in the middle ("osteofites") keep their start: Jaro-Winkler.
                match = process.extractOne(
                    word, choices, scorer=JaroWinkler.similarity, score_cutoff=LONG_WORD_JW_CUTOFF
                )
            if match is not None:
                return match[0]
        return word

    def expand(
        self, query_words: list[str] | tuple[str, ...], stand_ins: list[tuple[str, str]] | None = None
    ) -> tuple[str, ...]:
        """Corpus terms for the lay phrases found in the query, matched on stems ("medicines" = "medicine").

        `stand_ins`, if given, receives (stem of a lay word, stem of a corpus term) pairs.
        """
        stems = [self.analyzer.stem(w) for w in query_words]
        found: list[str] = []
        i = 0
        while i < len(stems):
            for size in range(min(self._longest_synonym, len(stems) - i), 0, -1):
                terms = self._synonym_stems.get(tuple(stems[i : i + size]))
                if terms is not None:
                    found.append(terms)
                    if stand_ins is not None:
                        term_stems = self.analyzer.stems(terms)
                        stand_ins.extend((lay, t) for lay in stems[i : i + size] for t in term_stems)
                    i += size
                    break
            else:
                i += 1
        return tuple(dict.fromkeys(" ".join(found).split()))

    def query_vector(self, text: str | list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Columns and L2-normalised TF-IDF weights of a query (its text or its analysed terms), and its
        distinct terms (sublinear tf, as the index)."""
        counts: dict[str, int] = {}
        for term in self.analyzer(text) if isinstance(text, str) else text:
            counts[term] = counts.get(term, 0) + 1
        if not counts:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), []
        terms = list(counts)
        columns = np.fromiter((_hash_feature(t) for t in terms), dtype=np.int64, count=len(terms))
        tf = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float32, count=len(terms)))
        idf = self.idf[columns]
        # Terms the corpus lacks are left out, as a fitted vocabulary would ignore them.
        weights = np.where(idf >= self._unseen_idf, np.float32(0), tf * idf)
        norm = float(np.linalg.norm(weights))
        return columns, (weights / norm if norm else weights), terms

    def search(self, question: str, limit: int = 3) -> SearchResult:
        query = self.analyse(question)
        query_terms = self.analyzer(query.search_text)
        columns, weights, terms = self.query_vector(query_terms)
        example_rows, example_similarities, every_example = self.examples.nearest_arrays(query_terms)
        if not len(columns) and not len(example_rows):
            return SearchResult(query, (), tuple(query_terms))
        # Scores straight from the column-major index: a question has few terms, so walking their
        # postings is cheaper than slicing the sparse matrix.
        indptr, indices, data = self.columns.indptr, self.columns.indices, self.columns.data
        postings = [indices[indptr[column] : indptr[column + 1]] for column in columns]
        scores = np.zeros(len(self.passages))
        if postings:  # every passage's score in one pass over the postings of the question's terms
            values = np.concatenate([data[indptr[column] : indptr[column + 1]] for column in columns])
            values = values * np.repeat(np.asarray(weights, dtype=np.float64), [len(p) for p in postings])
            scores += np.bincount(np.concatenate(postings), weights=values, minlength=len(self.passages))
        scores[example_rows] += EXAMPLE_WEIGHT * example_similarities
        candidates = np.flatnonzero(scores > 0)
        if not len(candidates):
            return SearchResult(query, (), tuple(query_terms))
        depth = max(limit, RERANK_DEPTH)
        if len(candidates) > depth:
            candidates = candidates[np.argpartition(-scores[candidates], depth - 1)[:depth]]
        order = candidates[np.lexsort((candidates, -scores[candidates]))]
        rows = order.tolist()
        # The passage classifiers' support for the candidates (0 for a passage they have no class for).
        said = [0.0] * len(rows)
        if self.passage_classifier is not None:
            said = [PASSAGE_CLASSIFIER_WEIGHT * v for v in self.passage_classifier.support(rows, query_terms)]
        if self.spelling_classifier is not None:
            support = self.spelling_classifier.support(rows, spelling_pieces(question))
            said = [s + SPELLING_CLASSIFIER_WEIGHT * v for s, v in zip(said, support)]
        # Which query terms each hit contains, and where its closest example is, if it has one.
        contains = _contains(postings, order, len(self.passages))
        at, has_example = _positions_in(example_rows, order)
        passages = [self.passages[i] for i in rows]
        matched = [tuple(sorted({term for term, present in zip(terms, row_terms) if present})) for row_terms in contains.tolist()]
        question_words = [t for t in terms if " " not in t]
        hits = []
        for i, passage, matched_terms, (coverage, bonus), n, found, value in zip(
            rows, passages, matched, self.rerank(query, passages, matched), at.tolist(), has_example.tolist(), said
        ):
            hits.append(
                Hit(
                    passage,
                    float(scores[i]) + value + bonus,
                    matched_terms,
                    coverage,
                    example=self.examples.questions[self.examples.closest(i, every_example)] if found else None,
                    example_similarity=float(example_similarities[n]) if found else 0.0,
                    classifier_score=value,
                    unexplained=self._unexplained_share(question_words, matched_terms, i),
                )
            )
        hits.sort(key=lambda hit: -hit.score)
        return SearchResult(query, tuple(hits[:limit]), tuple(query_terms))

    def _unexplained_share(self, question_words: list[str], matched_terms: tuple[str, ...], row: int) -> float:
        """Share of the question's words that neither the passage nor the example questions tied to it
        use: "can cats get myasthenia gravis" asks about something the myasthenia passage does not say."""
        if not question_words:
            return 0.0
        known = self.examples.words_of_row.get(row, frozenset())
        return sum(w not in known and w not in matched_terms for w in question_words) / len(question_words)

    def rerank(
        self, query: QueryAnalysis, passages: list[Passage], matched: list[tuple[str, ...]]
    ) -> list[tuple[float, float]]:
        """For a short list of passages (and the question's terms each contains): (coverage, bonus).
        The bonus re-orders them: how much of the question the passage and its title cover, and the
        boost of the intents the question shows ("why" → sections about causes)."""
        if not passages:
            return []
        intents = [i for i in self.domain.intents if i.name in query.intents]
        cues = set().union(*(i.cues for i in intents)) if intents else set()
        # Intent cue words ("why", "straight away") are served by the intent boost, not by coverage.
        own = list(dict.fromkeys(self.analyzer.stems(" ".join(w for w in query.words if w not in cues))))
        weights = {t: self._term_idf(t) for t in own}
        total = sum(weights.values()) or 1.0
        subjects = ()
        if DEFINITION_CUES & set(query.words):
            subjects = tuple(w for w in query.words if w not in STOP_WORDS and len(w) > 2 and w not in ("muscle", "weakness"))
        alternatives: dict[str, set[str]] = {}
        for lay, term in query.stand_ins:
            alternatives.setdefault(lay, set()).add(term)
        adjustments = []
        own_set = set(own)
        weighted = list(weights.items())
        for passage, matched_terms in zip(passages, matched):
            found = set(matched_terms)
            stems_of_title, stems_of_section, intent_boosts = self._passage_facts(passage)
            title_stems: set[str] | frozenset[str] = stems_of_title
            if alternatives:  # a lay word counts as found where its corpus term is
                found.update(lay for lay, terms in alternatives.items() if terms & found)
                title_stems = stems_of_title | {lay for lay, terms in alternatives.items() if terms & stems_of_title}
            coverage = sum(w for t, w in weighted if t in found) / total
            title_share = sum(w for t, w in weighted if t in title_stems) / total
            boost = sum(intent_boosts.get(i.name, 0.0) for i in intents)
            if own and own_set == stems_of_section:
                boost += TITLE_EXACT_BOOST
            if subjects and self._defines(passage, subjects):
                boost += DEFINITION_BOOST
            adjustments.append((coverage, COVERAGE_WEIGHT * coverage + TITLE_WEIGHT * title_share + boost))
        return adjustments

    def _passage_facts(self, passage: Passage) -> tuple[frozenset[str], frozenset[str], dict[str, float]]:
        """What re-ranking needs of a passage whatever the question: the stems of its titles, of its own
        section title, and each intent's boost (its title is in the intent's sections, its text has
        the intent's words). Worked out once per passage (a bounded number kept)."""
        facts = self._facts.get(id(passage))
        if facts is None:
            title, stems_of_title = self._title_info(" ".join((passage.section, *passage.also_in)))
            passage_stems = frozenset(self.analyzer.stems(passage.text))
            boosts = {}
            for intent in self.domain.intents:
                boost = intent.boost if any(s in title for s in intent.sections) else 0.0
                boost += intent.passage_boost if self._intent_stems[intent.name] & passage_stems else 0.0
                if boost:
                    boosts[intent.name] = boost
            if len(self._facts) >= MAX_PASSAGE_FACTS:
                self._facts.clear()
            facts = self._facts[id(passage)] = (stems_of_title, self._title_info(passage.section)[1], boosts)
        return facts

    @lru_cache(maxsize=4096)
    def _title_info(self, title: str) -> tuple[str, frozenset[str]]:
        """A section title folded to words, and its stems (few distinct titles: cached)."""
        folded = " ".join(words(title))
        return folded, frozenset(self.analyzer.stems(folded))

    @staticmethod
    @lru_cache(maxsize=4096)
    def _definition_text(text: str) -> str:
        return " ".join(words(text.replace(" - ", " dash ").replace(" – ", " dash ")))

    def _defines(self, passage: Passage, subjects: tuple[str, ...]) -> bool:
        text = self._definition_text(passage.text)
        return any(f"{w} is " in text or f"{w} dash " in text or f"{w} are " in text for w in subjects)

    def _term_idf(self, term: str) -> float:
        """A term's IDF; terms the corpus lacks get the highest a corpus term can have."""
        return min(float(self.idf[_hash_feature(term)]), self._max_seen_idf)


def section_suggestions(passages: list[Passage], exclude: str | None = None, limit: int = 5) -> list[str]:
    """A few section titles that show what the corpus covers."""
    titles = [t for t in dict.fromkeys(p.section for p in passages) if t != exclude]
    questions = [t for t in titles if t.endswith("?")]
    topics = [t for t in titles if not t.endswith("?")]
    picked = (topics + questions)[:limit]
    return [re.sub(r"\s+", " ", t) for t in picked]
