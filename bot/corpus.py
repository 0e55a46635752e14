"""Corpus files → passages that follow the text's own sections."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import charset_normalizer
import numpy as np
from rapidfuzz import fuzz

log = logging.getLogger(__name__)

CORPUS_SUFFIXES = (".txt", ".md")
MIN_PASSAGE_CHARS = 200
MAX_PASSAGE_CHARS = 700
MAX_HEADING_CHARS = 100
MAX_HEADING_WORDS = 12
NEAR_DUPLICATE_RATIO = 75.0
NEAR_DUPLICATE_MIN_LENGTH_RATIO = 0.4
# Up to this many passages every pair is compared; above it, MinHash proposes the pairs.
EXHAUSTIVE_DEDUP_LIMIT = 3000
# Share of MinHash values two passages must have in common before rapidfuzz compares them.
MIN_SIGNATURE_AGREEMENT = 0.2
NON_WORD_RE = re.compile(r"[^\w\s]")

BULLET_RE = re.compile(r"^\s*(?:[•\-*–·▪●]|\d{1,2}[.)])\s+")
MARKDOWN_HEADING_RE = re.compile(r"^\s{0,3}#{1,6}\s+")
# A sentence ends at . ! ? ; (optionally followed by a closing quote or bracket),
# and the next one starts with a capital, digit, quote or bracket.
SENTENCE_BOUNDARY_RE = re.compile(r"(?<=[.!?;])[\"”’)\]]?\s+(?=[A-Z0-9\"“‘(\[])")
LOST_HEADING_SUBJECT_RE = re.compile(r"^(?:(?:A|An|The) )?([\w'’-]+(?: [\w'’-]+){0,3}) (?:is|are) ")


class CorpusError(Exception):
    """The corpus folder cannot be used; the message names the path."""


@dataclass(frozen=True)
class Passage:
    """A readable piece of the corpus: the unit that retrieval ranks and replies quote."""

    id: str
    source: str
    section: str
    text: str
    also_in: tuple[str, ...] = field(default=())

    def search_text(self) -> str:
        """What the index sees: section titles weigh in alongside the text."""
        titles = " ".join((self.section, *self.also_in))
        return f"{titles}\n{self.text}"


@dataclass
class _Block:
    lines: list[str]
    blank_lines_before: int

    @property
    def text(self) -> str:
        return " ".join(line.strip() for line in self.lines)


@dataclass
class _Unit:
    """A piece that is never split further: a paragraph chunk, or a lead-in with its bullets."""

    section: str
    text: str


def load_passages(corpus_dir: Path | str) -> list[Passage]:
    """Read every text file under corpus_dir and split it into passages."""
    folder = Path(corpus_dir)
    files = list_corpus_files(folder)
    passages: list[Passage] = []
    sources = [path.relative_to(folder).as_posix() for path in files]
    stems = Counter(Path(source).stem for source in sources)
    for path, source in zip(files, sources):
        text = read_text_file(path)
        if text is None:
            continue
        # Ids are "<file name>-001"; files with the same name (a/guide.md, b/guide.md) are told apart by path.
        prefix = Path(source).stem if stems[Path(source).stem] == 1 else re.sub(r"[/.]", "-", source)
        passages.extend(split_into_passages(text, source, prefix))
    if not passages:
        raise CorpusError(f"corpus folder {folder} has no readable text")
    return merge_near_duplicates(passages)


def list_corpus_files(folder: Path) -> list[Path]:
    if not folder.exists():
        raise CorpusError(f"corpus folder {folder} does not exist")
    if not folder.is_dir():
        raise CorpusError(f"corpus path {folder} is not a folder")
    try:
        files = sorted(
            p for p in folder.rglob("*") if p.suffix.lower() in CORPUS_SUFFIXES and p.is_file()
        )
    except OSError as error:
        raise CorpusError(f"corpus folder {folder} cannot be read: {error.strerror}") from None
    if not files:
        raise CorpusError(f"corpus folder {folder} has no .txt or .md files")
    return files


def read_text_file(path: Path) -> str | None:
    """Decode a file as UTF-8, falling back with a warning; None (with a warning) when unusable."""
    raw = read_stable_bytes(path)
    if raw is None:
        return None
    if looks_binary(raw):
        log.warning("skipping %s: it looks like a binary file", path)
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = decode_with_fallback(raw, path)
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))


def read_stable_bytes(path: Path, attempts: int = 3) -> bytes | None:
    """The file's bytes, read again if it changed while being read; None (with a warning) if unreadable."""
    raw = b""
    for _ in range(attempts):
        try:
            before = path.stat()
            raw = path.read_bytes()
            after = path.stat()
        except OSError as error:
            log.warning("skipping %s: cannot read it (%s)", path, error.strerror or error)
            return None
        if (before.st_mtime_ns, before.st_size) == (after.st_mtime_ns, after.st_size) == (after.st_mtime_ns, len(raw)):
            return raw
    log.warning("%s kept changing while it was read; using the last version read", path)
    return raw


def looks_binary(raw: bytes) -> bool:
    sample = raw[:8192]
    if b"\x00" in sample:
        return True
    controls = sum(1 for byte in sample if byte < 32 and byte not in (9, 10, 12, 13))
    return bool(sample) and controls / len(sample) > 0.05


def decode_with_fallback(raw: bytes, path: Path) -> str:
    """Detect the encoding of non-UTF-8 text with charset-normalizer; warn about it."""
    best = charset_normalizer.from_bytes(raw).best()
    if best is None:
        encoding, text = "latin-1", raw.decode("latin-1")
    else:
        encoding, text = best.encoding, str(best)
    log.warning("%s is not valid UTF-8; read it as %s", path, encoding)
    return text


def split_into_passages(text: str, source: str, id_prefix: str | None = None) -> list[Passage]:
    units = list(_units(_blocks(text), default_section=_title_from_filename(source)))
    chunks = _pack(units)
    prefix = id_prefix or Path(source).stem
    return [
        Passage(id=f"{prefix}-{number:03d}", source=source, section=section, text=body)
        for number, (section, body) in enumerate(chunks, start=1)
    ]


def _title_from_filename(source: str) -> str:
    return Path(source).stem.replace("_", " ").replace("-", " ").strip().capitalize() or source


def _blocks(text: str) -> list[_Block]:
    blocks: list[_Block] = []
    current: list[str] = []
    blanks = 0
    for line in text.split("\n"):
        if line.strip():
            if current and _starts_new_block(line, current):
                blocks.append(_Block(current, blanks))
                current, blanks = [], 0
            current.append(line)
        else:
            if current:
                blocks.append(_Block(current, blanks))
                current, blanks = [], 0
            blanks += 1
    if current:
        blocks.append(_Block(current, blanks))
    return blocks


def _starts_new_block(line: str, current: list[str]) -> bool:
    """A markdown heading, or a switch between bullets and prose, starts a block without a blank line."""
    if MARKDOWN_HEADING_RE.match(line) or MARKDOWN_HEADING_RE.match(current[-1]):
        return True
    return bool(BULLET_RE.match(line)) != bool(BULLET_RE.match(current[-1]))


def is_heading(block: _Block) -> bool:
    if len(block.lines) != 1:
        return False
    line = block.lines[0].strip()
    if MARKDOWN_HEADING_RE.match(block.lines[0]):
        return True
    if BULLET_RE.match(line) or not line[:1].isupper() and not line[:1].isdigit():
        return False
    if line.endswith("?"):
        return len(line) <= 2 * MAX_HEADING_CHARS
    return (
        len(line) <= MAX_HEADING_CHARS
        and len(line.split()) <= MAX_HEADING_WORDS
        and not line.endswith((".", ":", ";", ",", "!"))
    )


def _is_bullets(block: _Block) -> bool:
    return all(BULLET_RE.match(line) for line in block.lines)


def _units(blocks: list[_Block], default_section: str):
    """Yield units in order, each tagged with its section title."""
    section = default_section
    pending_lead_in: str | None = None
    for block in blocks:
        if is_heading(block):
            if pending_lead_in:
                yield _Unit(section, pending_lead_in)
                pending_lead_in = None
            section = MARKDOWN_HEADING_RE.sub("", block.lines[0]).strip()
            continue
        if _is_bullets(block):
            items = "\n".join("• " + BULLET_RE.sub("", line).strip() for line in block.lines)
            body = f"{pending_lead_in}\n{items}" if pending_lead_in else items
            pending_lead_in = None
            yield _Unit(section, body)
            continue
        if pending_lead_in:
            yield _Unit(section, pending_lead_in)
            pending_lead_in = None
        paragraph = re.sub(r"\s+", " ", block.text).strip()
        if block.blank_lines_before >= 2:
            section = _title_for_untitled_topic(paragraph) or section
        if paragraph.endswith(":"):
            pending_lead_in = paragraph
            continue
        for chunk in split_long_paragraph(paragraph):
            yield _Unit(section, chunk)
    if pending_lead_in:
        yield _Unit(section, pending_lead_in)


def _title_for_untitled_topic(paragraph: str) -> str | None:
    """Two blank lines mark a lost heading; 'Polymyositis is ...' gives the title 'Polymyositis'."""
    match = LOST_HEADING_SUBJECT_RE.match(paragraph)
    if not match:
        return None
    subject = match.group(1)
    return subject[:1].upper() + subject[1:]


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_BOUNDARY_RE.split(text) if s.strip()]


def split_long_paragraph(paragraph: str, limit: int = MAX_PASSAGE_CHARS) -> list[str]:
    """Split at sentence boundaries into near-equal chunks no longer than limit (a sentence is never cut)."""
    if len(paragraph) <= limit:
        return [paragraph]
    sentences = split_sentences(paragraph)
    parts = -(-len(paragraph) // limit)
    target = len(paragraph) / parts
    chunks: list[str] = []
    current = ""
    for sentence in sentences:
        candidate = f"{current} {sentence}".strip()
        if current and (len(candidate) > limit or len(current) >= target):
            chunks.append(current)
            current = sentence
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


def _pack(units: list[_Unit]) -> list[tuple[str, str]]:
    """Join short neighbouring units of one section so passages run about 200–700 characters."""
    packed: list[tuple[str, str]] = []
    for unit in units:
        if packed:
            section, body = packed[-1]
            joined = f"{body}\n\n{unit.text}"
            fits = len(joined) <= MAX_PASSAGE_CHARS
            if section == unit.section and fits and (
                len(body) < MIN_PASSAGE_CHARS or len(unit.text) < MIN_PASSAGE_CHARS
            ):
                packed[-1] = (section, joined)
                continue
        packed.append((unit.section, unit.text))
    return packed


def merge_near_duplicates(passages: list[Passage], threshold: float = NEAR_DUPLICATE_RATIO) -> list[Passage]:
    """Merge passages that say the same thing twice: the longer text stays, both sections are kept.

    Small corpora compare every pair; large ones compare only the pairs that MinHash (LSH over
    word sets) proposes, which finds the same near-duplicates in near-linear time.
    """
    if len(passages) <= EXHAUSTIVE_DEDUP_LIMIT:
        candidates = {j: list(range(j)) for j in range(len(passages))}
    else:
        candidates = _minhash_candidates(passages)
    kept: dict[int, Passage] = {}
    merged_into: dict[int, int] = {}
    for j, passage in enumerate(passages):
        match = next(
            (
                root
                for i in candidates.get(j, ())
                if (root := merged_into.get(i, i)) in kept and are_near_duplicates(passage, kept[root], threshold)
            ),
            None,
        )
        if match is None:
            kept[j] = passage
            continue
        merged_into[j] = match
        original = kept[match]
        longer = passage if len(passage.text) > len(original.text) else original
        sections = dict.fromkeys((original.section, *original.also_in, passage.section, *passage.also_in))
        sections.pop(original.section)
        kept[match] = Passage(original.id, longer.source, original.section, longer.text, tuple(sections))
    return list(kept.values())


def _minhash_candidates(passages: list[Passage], bands: int = 16, rows: int = 2, max_bucket: int = 20) -> dict[int, list[int]]:
    """Earlier passages that share a MinHash band with each passage (likely near-duplicates)."""
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(binary=True, token_pattern=r"(?u)\b\w\w\w+\b", dtype=np.uint8)
    matrix = vectorizer.fit_transform(_normalise_for_comparison(p.text) for p in passages).tocsr()
    matrix.sort_indices()
    rng = np.random.default_rng(20261125)
    n_features = matrix.shape[1]
    starts = matrix.indptr[:-1]
    empty = np.diff(matrix.indptr) == 0
    signatures = np.empty((bands * rows, len(passages)), dtype=np.int64)
    for k in range(bands * rows):
        permutation = rng.permutation(n_features)
        values = permutation[matrix.indices] if matrix.nnz else np.empty(0, dtype=np.int64)
        minima = np.minimum.reduceat(values, np.minimum(starts, max(matrix.nnz - 1, 0))) if matrix.nnz else values
        signatures[k] = np.where(empty, -1 - np.arange(len(passages)), minima)
    pairs = [_band_pairs(signatures[band * rows : (band + 1) * rows], max_bucket) for band in range(bands)]
    encoded = np.unique(np.concatenate(pairs)) if pairs else np.empty(0, dtype=np.int64)
    earlier, later = encoded // len(passages), encoded % len(passages)
    # Keep pairs whose signatures agree often enough to be worth a rapidfuzz comparison.
    keep = np.zeros(len(encoded), dtype=bool)
    for start in range(0, len(encoded), 200_000):
        part = slice(start, start + 200_000)
        agreement = (signatures[:, earlier[part]] == signatures[:, later[part]]).mean(axis=0)
        keep[part] = agreement >= MIN_SIGNATURE_AGREEMENT
    candidates: dict[int, list[int]] = {}
    for i, j in zip(earlier[keep].tolist(), later[keep].tolist()):
        candidates.setdefault(j, []).append(i)
    return candidates


def _band_pairs(band: np.ndarray, max_bucket: int) -> np.ndarray:
    """(earlier * n + later) for every two passages whose signatures agree on a whole band."""
    n = band.shape[1]
    keys = band[0].copy()
    for row in band[1:]:
        keys = keys * 1_000_003 + row
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    boundaries = np.flatnonzero(np.diff(sorted_keys)) + 1
    starts = np.concatenate(([0], boundaries))
    sizes = np.diff(np.concatenate((starts, [n])))
    pairs_of_two = starts[sizes == 2]
    found = [order[pairs_of_two] * n + order[pairs_of_two + 1]]
    for start, size in zip(starts[sizes > 2].tolist(), sizes[sizes > 2].tolist()):
        members = order[start : start + min(size, max_bucket)]
        first, second = np.triu_indices(len(members), 1)
        found.append(members[first] * n + members[second])
    return np.concatenate(found)


def are_near_duplicates(a: Passage, b: Passage, threshold: float = NEAR_DUPLICATE_RATIO) -> bool:
    shorter, longer = sorted((len(a.text), len(b.text)))
    if shorter < NEAR_DUPLICATE_MIN_LENGTH_RATIO * longer:
        return False
    score = fuzz.token_set_ratio(
        _normalise_for_comparison(a.text), _normalise_for_comparison(b.text), score_cutoff=threshold
    )
    return bool(score)


@lru_cache(maxsize=8192)
def _normalise_for_comparison(text: str) -> str:
    return NON_WORD_RE.sub(" ", text.casefold())
