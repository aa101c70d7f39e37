"""First stage: BM25 candidates (bm25s embedded, or pyserini/Lucene), a TREC run file, or
ir_datasets scoreddocs. Computed once per (collection, backend, settings, depth) and cached."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from tqdm.auto import tqdm

from .data import Collection, official_file
from .errors import BenchError
from .files import atomic_write_text

BM25_SETTINGS = {"k1": 0.9, "b": 0.4}  # Anserini's BEIR "flat" regression settings


OFFICIAL_RUN = "official-run"


def cache_key(collection: Collection, backend: str, depth: int, settings: dict) -> str:
    text = json.dumps([collection.ref, collection.fingerprint, backend, depth, settings], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def candidates(
    collection: Collection, backend: str, depth: int, cache_dir: Path, settings: dict | None = None
) -> dict[str, dict[str, float]]:
    """{query id: {doc id: score}} with at most ``depth`` documents per query, cached on disk."""
    settings = dict(BM25_SETTINGS if settings is None else settings)
    if backend == OFFICIAL_RUN:  # the run shipped with the collection (TREC DL's BM25 top-100)
        if not collection.source:
            raise BenchError(f"first stage {OFFICIAL_RUN!r} needs a local folder with official/run.*.trec")
        backend = str(official_file(Path(collection.source), "run.*.trec"))
    key_backend = backend if backend in ("bm25s", "pyserini", "irds") else f"file:{_file_key(backend)}"
    path = Path(cache_dir) / "candidates" / f"{cache_key(collection, key_backend, depth, settings)}.json"
    if path.exists():
        cached = json.loads(path.read_text())
        # the key names the collection, not its query subset (eval max_queries): a file written for some
        # queries must not stand in for others; the candidates of a query do not depend on the rest
        if all(q in cached for q in collection.queries):
            return {q: cached[q] for q in collection.queries}
    if backend == "bm25s":
        run = bm25s_search(collection, depth, **settings)
    elif backend == "pyserini":
        run = pyserini_search(collection, depth, Path(cache_dir) / "lucene", **settings)
    elif backend == "irds":
        run = irds_scoreddocs(collection, depth)
    else:
        run = check_run(read_trec_run(Path(backend), depth), collection, backend)
    run = {q: run.get(q, {}) for q in collection.queries}
    atomic_write_text(path, json.dumps(run))
    return run


def candidates_for(first_stage: dict, collection: Collection, cache_dir: Path, depth: int) -> dict:
    """Candidates for a cell's ``first_stage`` settings (backend, k1, b; the depth is given)."""
    given = {k: v for k, v in first_stage.items() if k not in ("backend", "depth", "by_dataset") and v is not None}
    return candidates(
        collection, first_stage["backend"], depth, cache_dir, {**BM25_SETTINGS, **given} if given else None
    )


def _file_key(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise BenchError(f"first stage {path!r}: not bm25s, pyserini, irds, nor an existing TREC run file")
    st = p.stat()
    return f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def _top(scores: dict[str, float], depth: int) -> dict[str, float]:
    return dict(sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:depth])


def bm25s_search(collection: Collection, depth: int, k1: float, b: float) -> dict:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    doc_ids = list(collection.corpus)
    progress = len(doc_ids) >= 20_000  # indexing and search take seconds below that
    corpus_tokens = bm25s.tokenize(
        [collection.corpus[d] for d in doc_ids], stopwords="en", stemmer=stemmer, show_progress=progress
    )
    retriever = bm25s.BM25(method="lucene", k1=k1, b=b)
    retriever.index(corpus_tokens, show_progress=progress)
    query_ids = list(collection.queries)
    query_tokens = bm25s.tokenize(
        [collection.queries[q] for q in query_ids], stopwords="en", stemmer=stemmer, show_progress=progress
    )
    k = min(depth, len(doc_ids))
    # numpy's top-k: bm25s would otherwise pick jax's where jax is installed
    results, scores = retriever.retrieve(
        query_tokens, k=k, show_progress=progress, n_threads=1, backend_selection="numpy"
    )
    run = {}
    for qi, q in enumerate(query_ids):
        run[q] = _top({doc_ids[int(d)]: float(s) for d, s in zip(results[qi], scores[qi]) if s > 0}, depth)
    return run


def pyserini_search(collection: Collection, depth: int, index_root: Path, k1: float, b: float) -> dict:
    try:
        from pyserini.search.lucene import LuceneSearcher
    except Exception as exc:  # noqa: BLE001  (pyserini fails at import in many ways: Java, faiss, torch)
        raise BenchError(
            f"first stage pyserini is not usable here ({type(exc).__name__}: {exc}); "
            "pip install 'peft-ir-bench[pyserini]' with Java 17+, or use --first-stage bm25s"
        ) from None
    index = index_root / collection.fingerprint
    if not (index / "segments.gen").exists() and not any(index.glob("segments_*")):
        _build_lucene_index(collection, index)
    searcher = LuceneSearcher(str(index))
    searcher.set_bm25(k1, b)
    query_ids = list(collection.queries)
    run = {}
    for start in tqdm(range(0, len(query_ids), 64), desc="pyserini bm25", leave=False):
        chunk = query_ids[start : start + 64]
        hits = searcher.batch_search([collection.queries[q] for q in chunk], chunk, k=depth, threads=2)
        for q in chunk:
            run[q] = _top({h.docid: float(h.score) for h in hits.get(q, [])}, depth)
    return run


def _build_lucene_index(collection: Collection, index: Path) -> None:
    import shutil
    import subprocess
    import sys
    import tempfile

    docs = Path(tempfile.mkdtemp(prefix="bench-docs-"))
    try:
        with (docs / "docs.jsonl").open("w", encoding="utf-8") as f:
            for doc_id, text in collection.corpus.items():
                f.write(json.dumps({"id": doc_id, "contents": text}) + "\n")
        tmp_index = index.with_name(index.name + ".tmp")
        shutil.rmtree(tmp_index, ignore_errors=True)
        cmd = [
            sys.executable,
            "-m",
            "pyserini.index.lucene",
            "--collection",
            "JsonCollection",
            "--input",
            str(docs),
            "--index",
            str(tmp_index),
            "--generator",
            "DefaultLuceneDocumentGenerator",
            "--threads",
            "2",
            "--storePositions",
            "--storeDocvectors",
            "--storeRaw",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"pyserini indexing failed: {done.stderr.strip().splitlines()[-1:]}")
        shutil.rmtree(index, ignore_errors=True)
        tmp_index.rename(index)
    finally:
        shutil.rmtree(docs, ignore_errors=True)


def check_run(run: dict, collection: Collection, where: str) -> dict:
    """A given run, less its queries and documents the collection lacks (each counted in one warning); an
    error when nothing is left to rerank."""
    from .errors import warn

    unknown_queries = sorted(set(run) - set(collection.queries))
    unknown_docs = sum(1 for docs in run.values() for d in docs if d not in collection.corpus)
    if unknown_queries:
        warn(
            f"{where}: {len(unknown_queries)} queries of the run are not judged in {collection.ref} "
            f"(e.g. {unknown_queries[0]!r}): left out"
        )
    if unknown_docs:
        warn(f"{where}: {unknown_docs} ranked documents are not in the corpus of {collection.ref}: left out")
    kept = {
        q: {d: s for d, s in docs.items() if d in collection.corpus}
        for q, docs in run.items()
        if q in collection.queries
    }
    empty = [q for q in collection.queries if not kept.get(q)]
    if len(empty) == len(collection.queries):
        raise BenchError(
            f"first stage {where}: no query of {collection.ref} has a candidate in its corpus: "
            "nothing to rerank (another run file, or the matching dataset?)"
        )
    if empty:
        warn(f"{where}: {len(empty)} of {len(collection.queries)} queries of {collection.ref} have no candidate")
    return kept


def read_trec_run(path: Path, depth: int) -> dict:
    from .data import _lines

    run: dict[str, dict[str, float]] = {}
    for number, line in _lines(path):
        parts = line.split()
        if not parts or parts[0].startswith("#"):  # blank, or a comment (an ir_metadata header)
            continue
        if len(parts) != 6:
            raise BenchError(f"{path}:{number}: a TREC run line has 6 fields (qid Q0 docid rank score tag)")
        try:
            score = float(parts[4])
        except ValueError:
            raise BenchError(f"{path}:{number}: score {parts[4]!r} is not a number") from None
        if not math.isfinite(score):
            raise BenchError(f"{path}:{number}: score {parts[4]!r} is not finite")
        run.setdefault(parts[0], {})[parts[2]] = score
    if not run:
        raise BenchError(f"{path}: the run is empty (no 'qid Q0 docid rank score tag' line)")
    return {q: _top(docs, depth) for q, docs in run.items()}


def irds_scoreddocs(collection: Collection, depth: int) -> dict:
    import ir_datasets

    if not collection.source.startswith("ir_datasets:"):
        raise BenchError("first stage irds needs an ir_datasets dataset (one with scoreddocs)")
    dataset = ir_datasets.load(collection.ref)
    if not dataset.has_scoreddocs():
        raise BenchError(f"{collection.ref} has no scoreddocs: use --first-stage bm25s")
    run: dict[str, dict[str, float]] = {}
    for sd in dataset.scoreddocs_iter():
        run.setdefault(sd.query_id, {})[sd.doc_id] = float(sd.score)
    return {q: _top(docs, depth) for q, docs in run.items()}


def write_trec_run(run: dict, path: Path, tag: str, metadata: dict | None = None) -> None:
    """The run in TREC format, in ``evaluate.ranked`` order, scores unrounded (repr round-trips a float).
    ``metadata``: a header of ``#`` comment lines between ``ir_metadata.start`` and ``ir_metadata.end`` (the
    ir_metadata convention; strip them with ``grep -v '^#'`` for tools that read only run lines)."""
    from .evaluate import ranked

    lines = []
    if metadata:
        lines.append("# ir_metadata.start")
        lines += [f"# {key}: {json.dumps(value, sort_keys=True)}" for key, value in metadata.items()]
        lines.append("# ir_metadata.end")
    for q, docs in run.items():
        for rank, (d, s) in enumerate(ranked(docs), 1):
            lines.append(f"{q} Q0 {d} {rank} {float(s)!r} {tag}")
    atomic_write_text(path, "\n".join(lines) + "\n")
