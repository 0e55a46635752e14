"""`python -m bot bench`: speed and memory of the reply path at two corpus sizes, side by side with bm25s.

Each measurement that needs its own memory figure runs in a fresh worker process
(`python -m bot.bench worker ...`), which prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bot.argtypes import positive_int
from bot.chat import DEFAULT_CORPUS_DIR

REPO = Path(__file__).resolve().parent.parent
LARGE_CORPUS_DIR = REPO / ".cache" / "bench-corpus"
QUESTIONS_FILE = REPO / "eval" / "questions.jsonl"
FALLBACK_QUESTIONS = [
    "what medicines treat myasthenia gravis", "why are my legs weak", "what is ALS", "guilian bare",
    "pins and needles in my hand", "can a pinched nerve make my arm weak", "how do I bake bread",
    "when should i see a doctor", "weak muscles after the gym", "what is polymyositis",
]
TIMED_REPEATS = 3
IMPORT_FLOOR = "import sklearn.feature_extraction.text, rapidfuzz"


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def lay_questions(limit: int = 200) -> list[str]:
    if QUESTIONS_FILE.is_file():
        rows = [json.loads(line) for line in QUESTIONS_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [row["question"] for row in rows][:limit] or FALLBACK_QUESTIONS
    return FALLBACK_QUESTIONS


def sampled_questions(texts: list[str], count: int = 100, seed: int = 7) -> list[str]:
    """Questions made of a few consecutive words of random passages (for large corpora)."""
    rng = random.Random(seed)
    questions = []
    for text in rng.sample(texts, min(count, len(texts))):
        words = text.split()
        start = rng.randrange(max(1, len(words) - 6))
        questions.append(" ".join(words[start : start + rng.randint(3, 7)]))
    return questions


# ---------------------------------------------------------------------------------------------
# Workers (one process each, so that peak memory belongs to one engine)


def worker_build(corpus: Path, questions: list[str]) -> dict:
    """Read, split and merge the corpus, fit the index and save it to the cache."""
    from bot.corpus import load_passages
    from bot.index_cache import corpus_fingerprint, default_cache_root, index_settings, save_index, state_to_files
    from bot.retrieval import build_index_state

    started = time.perf_counter()
    passages = load_passages(corpus)
    loaded = time.perf_counter()
    state = build_index_state(passages)
    built = time.perf_counter()
    folder = default_cache_root() / corpus_fingerprint(corpus, index_settings())
    save_index(folder, state.passages, *state_to_files(state))
    saved = time.perf_counter()
    # The first start also reads the example questions and fits the classifiers on them, and caches both.
    from bot.chat import Chatbot

    Chatbot.from_corpus(corpus)
    return {
        "passages": len(passages),
        "load_s": loaded - started,
        "build_s": built - loaded,
        "save_s": saved - built,
        "examples_s": time.perf_counter() - saved,
        "peak_mb": peak_memory_mb(),
    }


def worker_serve(corpus: Path, questions: list[str]) -> dict:
    """Start from the cached index, then answer questions one at a time through the whole reply path."""
    started = time.perf_counter()
    from bot.chat import Chatbot

    imported = time.perf_counter()
    chatbot = Chatbot.from_corpus(corpus)
    ready = time.perf_counter()
    questions = questions + sampled_questions([p.text for p in chatbot.passages])
    timings = []
    for _ in range(TIMED_REPEATS):
        for question in questions:
            t0 = time.perf_counter()
            chatbot.reply(question).text()
            timings.append((time.perf_counter() - t0) * 1000)
    return {
        "passages": len(chatbot.passages),
        "import_s": imported - started,
        "cached_start_s": ready - imported,
        "p50_ms": statistics.median(timings),
        "p95_ms": percentile(timings, 0.95),
        "peak_mb": peak_memory_mb(),
        "questions": len(questions),
    }


def worker_bm25(corpus: Path, questions: list[str]) -> dict:
    import bm25s
    import snowballstemmer

    from bot.corpus import load_passages

    stem = snowballstemmer.stemmer("english").stemWords
    passages = load_passages(corpus)
    memory_before = peak_memory_mb()
    started = time.perf_counter()
    tokens = bm25s.tokenize([p.search_text() for p in passages], stemmer=stem, show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    built = time.perf_counter()
    questions = questions + sampled_questions([p.text for p in passages])
    timings = []
    for _ in range(TIMED_REPEATS):
        for question in questions:
            t0 = time.perf_counter()
            query = bm25s.tokenize([question], stemmer=stem, return_ids=False, show_progress=False)
            if query[0]:
                retriever.retrieve(query, k=min(3, len(passages)), show_progress=False, n_threads=1)
            timings.append((time.perf_counter() - t0) * 1000)
    return {
        "passages": len(passages),
        "build_s": built - started,
        "p50_ms": statistics.median(timings),
        "p95_ms": percentile(timings, 0.95),
        "peak_mb": peak_memory_mb(),
        "index_mb": peak_memory_mb() - memory_before,
    }


def run_worker(engine: str, corpus: Path, env: dict[str, str]) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "bot.bench", "worker", engine, str(corpus)],
        capture_output=True, text=True, cwd=REPO, env=env,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{engine} worker failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def wall_time(command: list[str], repeats: int = 3, env: dict[str, str] | None = None) -> float:
    """Median wall-clock seconds of a whole command, from process start to exit."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, cwd=REPO, check=False, env=env)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------
# The report


def bench_scale(label: str, corpus: Path, out) -> dict:
    """All figures for one corpus, each engine and phase in its own process, with a fresh cache."""
    print(f"\n== {label}: {corpus}", file=out, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache:
        env = {**os.environ, "BOT_CACHE_DIR": cache}
        build = run_worker("build", corpus, env)
        serve = run_worker("serve", corpus, env)
        bm25 = run_worker("bm25", corpus, env)
        ask = [sys.executable, "-m", "bot", "ask", "--corpus", str(corpus), "why are my legs weak"]
        start = wall_time(ask, env=env)
    ratio = serve["p50_ms"] / bm25["p50_ms"]
    print(f"passages                  {build['passages']}", file=out)
    print(f"read + split + merge      {build['load_s']:.2f} s", file=out)
    print(f"index build               ours {build['build_s']:.2f} s (+ {build['save_s']:.2f} s to save, {build['examples_s']:.2f} s first start)   bm25s {bm25['build_s']:.2f} s", file=out)
    print(f"start-up, cached index    {serve['cached_start_s']:.2f} s in process; `ask` end to end {start:.2f} s", file=out)
    print(
        f"answer latency p50/p95    ours {serve['p50_ms']:.3f}/{serve['p95_ms']:.3f} ms (whole reply path)   "
        f"bm25s {bm25['p50_ms']:.3f}/{bm25['p95_ms']:.3f} ms (retrieval only)   ours/bm25s {ratio:.2f}x",
        file=out,
    )
    print(
        f"peak memory               serving {serve['peak_mb']:.0f} MB, building {build['peak_mb']:.0f} MB   "
        f"bm25s {bm25['peak_mb']:.0f} MB",
        file=out, flush=True,
    )
    return {"build": build, "serve": serve, "bm25": bm25, "ask_start_s": start, "ratio": ratio}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--large-passages", type=positive_int, default=75_000, metavar="N", help="size of the generated corpus")
    parser.add_argument("--skip-large", action="store_true", help="measure the bundled corpus only")


def run_bench(args: argparse.Namespace, out=sys.stdout) -> int:
    """Print the figures for the bundled corpus and (unless skipped) a generated large one."""
    from bot.corpus import load_passages

    load_passages(args.corpus)  # a bad corpus is the same one-line CorpusError as for `ask`, not a worker failure
    floor = wall_time([sys.executable, "-c", IMPORT_FLOOR])
    print(f"import floor (python -c '{IMPORT_FLOOR}'): {floor:.2f} s", file=out)
    small = bench_scale("bundled corpus", args.corpus, out)
    print(
        f"targets: {small['serve']['p50_ms']:.3f} ms per answer (target <= 0.5 ms); "
        f"ask start-up {small['ask_start_s'] / floor:.2f}x the import floor (target <= 1.5x)",
        file=out,
    )
    if args.skip_large:
        return 0
    from bot.largecorpus import generate

    folder = LARGE_CORPUS_DIR / str(args.large_passages)
    print(f"\ngenerating a prose corpus of about {args.large_passages} passages (cached in {folder}) ...", file=out, flush=True)
    generate(folder, args.large_passages)
    large = bench_scale("large corpus", folder, out)
    print(
        f"targets: warm start {large['ask_start_s']:.2f} s (target <= 3 s); "
        f"p50 answer / bm25s retrieval {large['ratio']:.2f}x (target <= 1x); "
        f"peak memory serving {large['serve']['peak_mb']:.0f} MB (target <= 500 MB)",
        file=out,
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        engine, corpus = sys.argv[2], Path(sys.argv[3])
        worker = {"build": worker_build, "serve": worker_serve, "bm25": worker_bm25}[engine]
        print(json.dumps(worker(corpus, lay_questions())))
    else:
        parser = argparse.ArgumentParser(prog="python -m bot.bench")
        parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS_DIR)
        add_arguments(parser)
        sys.exit(run_bench(parser.parse_args()))
