"""Test collections: local BEIR folders and ir_datasets ids, as one ``Collection`` type.

A reference names a collection split:
- ``scifact/test``: folder ``scifact`` under BENCH_DATA_PATH (BEIR layout), split ``test``;
- ``/path/to/folder/test``: a BEIR folder by path and its split;
- anything else is an ir_datasets id, e.g. ``beir/scifact/test``, ``msmarco-passage/trec-dl-2019/judged``;
- ``<ref>~holdout:<fraction>:s<seed>`` and ``<ref>~fit:<fraction>:s<seed>``: a deterministic split of
  ``<ref>``'s judged queries into a validation part (the holdout) and the rest (what training may use).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from .errors import BenchError, warn


@dataclass
class Collection:
    ref: str
    corpus: dict[str, str]  # doc id -> "title text"
    queries: dict[str, str]  # query id -> text, only queries with judgments
    qrels: dict[str, dict[str, int]]
    fingerprint: str  # changes whenever the files change (cache keys)
    relevance_level: int = 1  # binary measures count grade >= this as relevant (2 for TREC DL)
    source: str = ""
    extra: dict = field(default_factory=dict)


@lru_cache(maxsize=8)
def cached_collection(ref: str) -> Collection:
    """``load_collection`` once per process (every cell of a grid reads the same few collections)."""
    return load_collection(ref)


def limit_queries(coll: Collection, max_queries: int | None, seed: int = 0) -> Collection:
    """A fixed, seeded subset of ``max_queries`` queries (the whole collection without a limit)."""
    if not max_queries or len(coll.queries) <= max_queries:
        return coll
    chosen = sorted(random.Random(seed).sample(sorted(coll.queries), max_queries))
    return replace(coll, queries={q: coll.queries[q] for q in chosen}, qrels={q: coll.qrels[q] for q in chosen})


DATA_ENV = "BENCH_DATA_PATH"


def default_data_paths() -> list[Path]:
    """Where local collections are looked for without BENCH_DATA_PATH: the ``shared/data`` folder beside
    this checkout (or beside the working directory), then ``~/.cache/bench/data``."""
    places = [
        Path(__file__).resolve().parents[2] / "shared" / "data",
        Path.cwd().resolve().parent / "shared" / "data",
        Path.home() / ".cache" / "bench" / "data",
    ]
    return list(dict.fromkeys(places))


def data_paths() -> list[Path]:
    raw = os.environ.get(DATA_ENV, "")
    if raw:
        return [Path(p) for p in raw.split(os.pathsep) if p]
    return [p for p in default_data_paths() if p.is_dir()]


def where_looked() -> str:
    raw = os.environ.get(DATA_ENV, "")
    places = [Path(p) for p in raw.split(os.pathsep) if p] if raw else default_data_paths()
    how = f"{DATA_ENV}={raw}" if raw else f"{DATA_ENV} unset"
    return f"looked in {', '.join(map(str, places))} ({how}; set {DATA_ENV} to the folder holding the collections)"


def is_beir_folder(path: Path) -> bool:
    return (path / "corpus.jsonl").is_file() and (path / "qrels").is_dir()


def list_local_datasets() -> list[str]:
    found = []
    for root in data_paths():
        if root.is_dir():
            found += sorted(p.name for p in root.iterdir() if is_beir_folder(p))
    return found


def locate_local(ref: str) -> tuple[Path, str] | None:
    """(folder, split) when ``ref`` names a local BEIR folder split, else None."""
    head, _, split = ref.rstrip("/").rpartition("/")
    if not head:
        return None
    candidates = [Path(head)] + [root / head for root in data_paths()]
    for folder in candidates:
        if is_beir_folder(folder):
            return folder, split
    return None


HOLDOUT_PARTS = ("holdout", "fit")


def holdout_ref(ref: str, part: str, fraction: float, seed: int) -> str:
    """The reference of ``part`` (holdout or fit) of ``ref``'s split for validation."""
    return f"{ref}~{part}:{fraction:g}:s{seed}"


def parse_holdout(ref: str) -> tuple[str, str, float, int] | None:
    """(base ref, part, fraction, seed) of a holdout reference, else None."""
    base, marker, spec = ref.rpartition("~")
    if not marker:
        return None
    try:
        part, fraction, seed = spec.split(":")
        fraction_value, seed_value = float(fraction), int(seed.removeprefix("s"))
    except ValueError:
        raise BenchError(f"dataset {ref!r}: a holdout is written <ref>~holdout:<fraction>:s<seed>") from None
    if part not in HOLDOUT_PARTS or not 0 < fraction_value < 1 or not seed.startswith("s"):
        raise BenchError(f"dataset {ref!r}: a holdout is written <ref>~holdout:<fraction>:s<seed> (0 < fraction < 1)")
    return base, part, fraction_value, seed_value


def held_out_queries(coll: Collection, fraction: float, seed: int) -> list[str]:
    """The validation queries of a holdout: of the judged queries (a relevant document in the corpus), the
    ``round(fraction * n)`` (at least one, never all) whose sha256 of "<seed>:<query id>" is smallest. It
    depends on the query ids, the fraction and the seed alone: the same for every method, budget and
    training seed, and on every machine."""
    judged = sorted(q for q in coll.queries if any(g > 0 and d in coll.corpus for d, g in coll.qrels[q].items()))
    if len(judged) < 2:
        raise BenchError(f"{coll.ref}: a holdout needs at least two judged queries, it has {len(judged)}")
    count = min(len(judged) - 1, max(1, round(fraction * len(judged))))
    return sorted(sorted(judged, key=lambda q: hashlib.sha256(f"{seed}:{q}".encode()).hexdigest())[:count])


def holdout_fingerprint(queries: list[str], fraction: float, seed: int) -> str:
    """Names the held-out query set (sorted ids, fraction, seed): equal on every machine for the same split."""
    text = json.dumps({"fraction": fraction, "seed": seed, "queries": sorted(queries)})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _holdout_part(ref: str, base: str, part: str, fraction: float, seed: int) -> Collection:
    coll = cached_collection(base)
    held = set(held_out_queries(coll, fraction, seed))
    keep = held if part == "holdout" else set(coll.queries) - held
    fingerprint = holdout_fingerprint(sorted(held), fraction, seed)
    return replace(
        coll,
        ref=ref,
        queries={q: t for q, t in coll.queries.items() if q in keep},
        qrels={q: j for q, j in coll.qrels.items() if q in keep},
        fingerprint=hashlib.sha256(f"{coll.fingerprint}:{ref}".encode()).hexdigest()[:16],
        extra={
            **coll.extra,
            "holdout": {
                "of": base,
                "part": part,
                "fraction": fraction,
                "seed": seed,
                "held_out": len(held),
                "fingerprint": fingerprint,
            },
        },
    )


def load_collection(ref: str) -> Collection:
    holdout = parse_holdout(ref)
    if holdout is not None:
        return _holdout_part(ref, *holdout)
    local = locate_local(ref)
    if local:
        return load_beir_folder(*local, ref=ref)
    if "/" not in ref and any(is_beir_folder(root / ref) for root in data_paths()):
        raise BenchError(f"dataset {ref!r} needs a split: e.g. {ref}/test or {ref}/train")
    return load_ir_datasets(ref)


def _fingerprint(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _lines(path: Path):
    """(line number, text) of a UTF-8 text file; a byte sequence that is not UTF-8 is one error naming the
    file and its byte offset."""
    offset = 0
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise BenchError(f"{path}: cannot read it ({exc.strerror})") from None
    with handle:
        for number, raw in enumerate(handle, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BenchError(
                    f"{path}: not UTF-8 at byte {offset + exc.start} (line {number}); re-encode the file as UTF-8"
                ) from None
            offset += len(raw)
            yield number, text.lstrip("\ufeff") if number == 1 else text


def json_lines(path: Path):
    """(line number, parsed JSON) of a JSON-lines file; a malformed line is one error naming file and line."""
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BenchError(f"{path}:{number}: malformed JSON ({exc.msg}); fix or remove that line") from None
        yield number, row


def _require(path: Path, number: int, row: dict, keys: tuple) -> None:
    missing = [k for k in keys if not isinstance(row, dict) or k not in row]
    if missing:
        raise BenchError(f"{path}:{number}: missing field {missing[0]!r} (BEIR lines need {', '.join(keys)})")


def _unique_rows(path: Path, kind: str):
    """(line number, id, row) of a BEIR jsonl file; an id seen twice is an error naming both lines."""
    seen: dict[str, int] = {}
    for number, row in json_lines(path):
        _require(path, number, row, ("_id", "text"))
        key = str(row["_id"])
        if key in seen:
            raise BenchError(
                f"{path}: {kind} id {key!r} appears twice (lines {seen[key]} and {number}); ids must be unique"
            )
        seen[key] = number
        yield number, key, row


def read_corpus(path: Path) -> dict[str, str]:
    corpus = {}
    for _, key, row in _unique_rows(path, "document"):
        title = (row.get("title") or "").strip()
        corpus[key] = f"{title} {row['text']}".strip() if title else str(row["text"])
    if not corpus:
        raise BenchError(f"{path}: the corpus is empty")
    return corpus


def read_queries(path: Path) -> dict[str, str]:
    return {key: str(row["text"]) for _, key, row in _unique_rows(path, "query")}


def _grade(text: str) -> int:
    """A relevance grade: an integer (``1``, ``2``; ``1.0`` reads as 1); anything else raises ValueError."""
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(text) from None
        return int(value)


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for number, line in _lines(path):
        parts = line.strip().split("\t") if "\t" in line else line.split()
        if not parts or (number == 1 and parts[0] in ("query-id", "query_id", "qid")):
            continue
        if len(parts) == 4:  # TREC format: qid 0 docid grade
            parts = [parts[0], parts[2], parts[3]]
        if len(parts) != 3:
            raise BenchError(f"{path}:{number}: expected 'query-id corpus-id score', got {line.strip()!r}")
        try:
            grade = _grade(parts[2])
        except ValueError:
            raise BenchError(
                f"{path}:{number}: relevance grade {parts[2]!r} is not an integer (qrels grade documents 0, 1, 2, ...)"
            ) from None
        qrels.setdefault(parts[0], {})[parts[1]] = grade
    return qrels


def check_judgments(qrels: dict, queries: dict, corpus: dict, where: str) -> dict:
    """The qrels of the queries the collection holds. Judged queries absent from the queries file are left
    out, judged documents absent from the corpus kept (trec_eval's ideal ranking counts them): each counted
    in one warning."""
    missing_queries = sorted(set(qrels) - set(queries))
    missing_docs = {(q, d) for q, docs in qrels.items() if q in queries for d in docs if d not in corpus}
    if missing_queries:
        warn(
            f"{where}: {len(missing_queries)} judged queries are not in the queries file "
            f"(e.g. {missing_queries[0]!r}): left out"
        )
    if missing_docs:
        example = sorted(missing_docs)[0]
        warn(
            f"{where}: {len(missing_docs)} judgments name documents not in the corpus (e.g. {example[1]!r} for "
            f"query {example[0]!r}): kept, as trec_eval keeps them (they count in the ideal ranking)"
        )
    return {q: docs for q, docs in qrels.items() if q in queries}


OFFICIAL = "official"  # split name: the folder's official/qrels.*.txt (e.g. the full NIST qrels of TREC DL)


def without_empty_queries(qrels: dict, queries: dict, where: str) -> dict:
    """Judged queries whose text is empty or whitespace are skipped (nothing to score them on), with one
    warning naming them; empty documents stay (BEIR corpora have them: they score like any document)."""
    empty = sorted(q for q in qrels if q in queries and not queries[q].strip())
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        warn(f"{where}: {len(empty)} judged queries have no text ({shown}): skipped, not scored")
    return {q: j for q, j in qrels.items() if q not in empty}


def official_file(folder: Path, pattern: str) -> Path:
    found = sorted((folder / OFFICIAL).glob(pattern))
    if len(found) != 1:
        raise BenchError(
            f"{folder}/{OFFICIAL}: expected exactly one {pattern}, found {len(found)}; "
            "the 'official' split and first stage need the folder's official/ files"
        )
    return found[0]


def load_beir_folder(folder: Path, split: str, ref: str | None = None) -> Collection:
    qrels_path = official_file(folder, "qrels.*.txt") if split == OFFICIAL else folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise BenchError(f"{folder} has no split {split!r}: available {', '.join(splits) or 'none'}")
    queries_path, corpus_path = folder / "queries.jsonl", folder / "corpus.jsonl"
    if not queries_path.is_file():
        raise BenchError(f"{queries_path} not found: a BEIR folder needs corpus.jsonl, queries.jsonl, qrels/")
    all_queries = read_queries(queries_path)
    corpus = read_corpus(corpus_path)
    qrels = check_judgments(read_qrels(qrels_path), all_queries, corpus, str(qrels_path))
    qrels = without_empty_queries(qrels, all_queries, str(queries_path))
    queries = {q: all_queries[q] for q in qrels}
    if not queries:
        raise BenchError(f"{qrels_path}: no judged query of {queries_path} (empty query set)")
    name = ref or f"{folder}/{split}"
    level = 2 if "trec-dl" in folder.name else 1
    return Collection(
        ref=name,
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        fingerprint=_fingerprint([corpus_path, queries_path, qrels_path]),
        relevance_level=level,
        source=str(folder),
    )


def load_ir_datasets(ref: str) -> Collection:
    import ir_datasets

    try:
        dataset = ir_datasets.load(ref)
    except KeyError:
        local = ", ".join(f"{n}/<split>" for n in list_local_datasets())
        found = f"local collections: {local}" if local else f"no local collection found: {where_looked()}"
        raise BenchError(
            f"unknown dataset {ref!r}: not a local BEIR folder ({found}) and not an ir_datasets id"
        ) from None
    try:
        queries = {q.query_id: q.text for q in dataset.queries_iter()}
        qrels: dict[str, dict[str, int]] = {}
        for qrel in dataset.qrels_iter():
            qrels.setdefault(qrel.query_id, {})[qrel.doc_id] = int(qrel.relevance)
        corpus = {}
        for doc in dataset.docs_iter():
            title = getattr(doc, "title", "") or ""
            corpus[doc.doc_id] = f"{title} {doc.text}".strip() if title else doc.text
    except Exception as exc:  # ir_datasets raises requests/OSError/custom errors when offline
        if not _looks_like_download_failure(exc):
            raise
        home = os.environ.get("IR_DATASETS_HOME", "~/.ir_datasets")
        raise BenchError(
            f"dataset {ref!r} must be downloaded and this machine is offline: put its source "
            f"files under {home} (ir_datasets' layout), or give a local BEIR folder "
            "(e.g. scifact/test with BENCH_DATA_PATH)"
        ) from None
    qrels = without_empty_queries(check_judgments(qrels, queries, corpus, ref), queries, ref)
    queries = {q: queries[q] for q in qrels}
    if not queries:
        raise BenchError(f"dataset {ref!r} has no judged queries")
    level = 2 if "trec-dl" in ref else 1
    return Collection(
        ref=ref,
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        fingerprint=hashlib.sha256(f"irds:{ref}".encode()).hexdigest()[:16],
        relevance_level=level,
        source=f"ir_datasets:{ref}",
    )


def _looks_like_download_failure(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in ("connection", "resolve", "download", "urlopen", "timed out", "max retries"))
