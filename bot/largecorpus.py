"""A large corpus of real English prose for benchmarks, made from the docstrings of installed packages.

It is generated on demand into a git-ignored cache folder and never committed.
"""

from __future__ import annotations

import ast
import gzip
import multiprocessing
import os
import re
import sys
import sysconfig
import warnings
from collections.abc import Iterator
from pathlib import Path

DEFAULT_PASSAGES = 75_000
AVERAGE_PASSAGE_CHARS = 640  # chars of prose written per passage left after splitting and merging, measured
MIN_PARAGRAPH_CHARS = 80
FILES_PER_CORPUS_FILE = 400
CODE_LINE_RE = re.compile(r"^\s*(>>>|\.\.\.|[-=~^]{3,}|\.\. |:param|:return|:type|:raises|[A-Za-z_]+\s*:\s*[A-Za-z_.\[\], |]+$)")


def source_roots() -> list[Path]:
    """The standard library and site-packages of the running interpreter."""
    paths = sysconfig.get_paths()
    roots = [Path(paths["stdlib"]), Path(paths["purelib"]), Path(paths["platlib"])]
    # Other Python installations beside this one (pyenv and the like) hold more documented code.
    roots += sorted(Path(sys.base_prefix).parent.glob("*/lib/python3.*"))
    return list(dict.fromkeys(r for r in roots if r.is_dir()))


def python_files() -> Iterator[Path]:
    """Package descriptions, every .py file, Markdown/reST documents, then manual pages."""
    roots = source_roots()
    for root in roots:
        yield from sorted(root.glob("*.dist-info/METADATA"))
    for root in roots:
        yield from sorted(root.rglob("*.py"))
    for root in (*roots, Path("/usr/share/doc"), Path("/usr/lib/node_modules")):
        if root.is_dir():
            yield from sorted(p for p in root.rglob("*") if p.suffix in (".md", ".rst") and p.is_file())
    for man in sorted(Path("/usr/share/man").glob("man[1-8]/*.gz")):
        yield man


TROFF_ESCAPE_RE = re.compile(r"\\f(?:\[[A-Z]*\]|[A-Z0-9])|\\\(..|\\\[[a-z]+\]|\\[&|^]|\\s[-+]?\d")


def man_page_text(path: Path) -> list[tuple[str, str]]:
    """A gzipped troff manual page as (section title, plain text) pairs."""
    try:
        raw = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
    except (OSError, EOFError, gzip.BadGzipFile):
        return []
    sections: list[tuple[str, str]] = []
    title, lines = path.name.split(".")[0], []
    for line in raw.splitlines():
        if line.startswith(".SH") or line.startswith(".SS"):
            sections.append((title, "\n".join(lines)))
            heading = line[3:].strip(' "').title()
            title = f"{path.name.split('.')[0]}: {heading}"
            lines = []
        elif line.startswith((".PP", ".P", ".LP", ".TP", ".IP", ".sp", ".br")):
            lines.append("")
        elif not line.startswith((".", "'", '\\"')):
            lines.append(TROFF_ESCAPE_RE.sub("", line).replace("\\-", "-").replace("\\", ""))
    sections.append((title, "\n".join(lines)))
    return sections


def prose_paragraphs(docstring: str) -> Iterator[str]:
    """Paragraphs of a docstring that read as English sentences (code, tables and field lists dropped)."""
    for block in re.split(r"\n\s*\n", docstring):
        lines = [line.strip() for line in block.splitlines() if not CODE_LINE_RE.match(line)]
        paragraph = " ".join(line for line in lines if line)
        if len(paragraph) < MIN_PARAGRAPH_CHARS:
            continue
        letters = sum(ch.isalpha() or ch == " " for ch in paragraph)
        if letters / len(paragraph) > 0.75 and re.search(r"[a-z]{3,}[.!?](\s|$)", paragraph):
            yield paragraph


def docstrings(path: Path) -> list[tuple[str, str]]:
    """(qualified name, text) for the module, classes and functions of a .py file, or a package's README."""
    if path.suffix == ".gz":
        return man_page_text(path)
    if path.suffix in (".md", ".rst"):
        text = path.read_text(encoding="utf-8", errors="replace")
        return [(f"{path.parent.name}/{path.name}", re.sub(r"(?m)^[#=*~^`-]{3,}.*$|^#+ ", "", text))]
    if path.name == "METADATA":
        text = path.read_text(encoding="utf-8", errors="replace")
        name = path.parent.name.split("-")[0]
        return [(f"{name} (package description)", text.split("\n\n", 1)[-1])]
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError, RecursionError, MemoryError):
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            text = ast.get_docstring(node)
            if text:
                found.append((path.stem if isinstance(node, ast.Module) else f"{path.stem}.{node.name}", text))
    return found


def _sections_of(path: Path) -> list[tuple[str, list[str]]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # old sources parse with SyntaxWarnings; only docstrings matter
        return [(name, list(prose_paragraphs(text))) for name, text in docstrings(path)]


def generate(folder: Path, passages: int = DEFAULT_PASSAGES, progress=None) -> Path:
    """Write about `passages` passages of prose as Markdown files into folder (reused if complete)."""
    marker = folder / ".complete"
    if marker.is_file() and marker.read_text().strip() == str(passages):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.md"):
        old.unlink()
    target_chars = passages * AVERAGE_PASSAGE_CHARS
    written, part, sections = 0, 0, []
    seen: set[str] = set()
    with multiprocessing.Pool(max(1, os.cpu_count() or 1)) as pool:
        for found in pool.imap(_sections_of, python_files(), chunksize=16):
            for name, paragraphs in found:
                fresh = [p for p in paragraphs if p not in seen]
                if not fresh:
                    continue
                seen.update(fresh)
                sections.append(f"## {name}\n\n" + "\n\n".join(fresh))
                written += sum(len(p) for p in fresh)
            if len(sections) >= FILES_PER_CORPUS_FILE:
                part = _flush(folder, part, sections)
                if progress:
                    progress(min(written, target_chars), target_chars)
            if written >= target_chars:
                pool.terminate()
                break
    _flush(folder, part, sections)
    marker.write_text(str(passages))
    return folder


def _flush(folder: Path, part: int, sections: list[str]) -> int:
    if sections:
        (folder / f"docs-{part:04d}.md").write_text("\n\n".join(sections) + "\n", encoding="utf-8")
        sections.clear()
        return part + 1
    return part


if __name__ == "__main__":  # pragma: no cover - manual use
    print(generate(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_PASSAGES))
