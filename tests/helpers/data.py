"""Tiny BEIR folders written by the tests themselves."""

import json
from pathlib import Path

DOCS = {
    "d1": ("Rain", "rain forms when water vapour condenses into droplets in clouds"),
    "d2": ("Markets", "the stock market closed higher on friday after strong earnings"),
    "d3": ("Flu", "fever cough and muscle aches are common influenza symptoms"),
    "d4": ("Baking", "the bread recipe needs two cups of flour and yeast"),
    "d5": ("Vaccines", "vaccines train the immune system to recognise a pathogen"),
    "d6": ("Football", "the football match ended in a draw after extra time"),
    "d7": ("Light", "light travels at about three hundred thousand kilometres per second"),
    "d8": ("Painting", "she painted the kitchen walls a pale shade of blue"),
}
QUERIES = {
    "q1": "what causes rain",
    "q2": "symptoms of influenza",
    "q3": "how do vaccines work",
    "q4": "speed of light",
    "q5": "stock market earnings",
    "q6": "bread flour recipe",
}
QRELS = {
    "train": [("q1", "d1", 1), ("q2", "d3", 1), ("q3", "d5", 1), ("q4", "d7", 1)],
    "test": [("q5", "d2", 1), ("q6", "d4", 2)],
}


def write_beir(root: Path, name: str = "toy") -> Path:
    folder = Path(root) / name
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as f:
        for doc_id, (title, text) in DOCS.items():
            f.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as f:
        for qid, text in QUERIES.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    for split, rows in QRELS.items():
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in rows]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


WORDS = (
    "rain cloud storm river ocean market stock bread flour vaccine immune virus light speed planet star "
    "football match goal paint colour kitchen garden flower tree forest mountain valley city train engine "
    "music song guitar piano school lesson book paper computer network signal battery solar wind energy"
).split()


def write_synthetic_beir(root: Path, name: str = "synth", documents: int = 60, train: int = 40) -> Path:
    """A seeded BEIR folder big enough for validation scores to differ: ``documents`` documents of six
    words, one query per document (three of its words and one other), ``train`` of them in the train
    split and the rest in test."""
    import random

    rng = random.Random(7)
    folder = Path(root) / name
    (folder / "qrels").mkdir(parents=True)
    docs = {f"d{i}": " ".join(rng.sample(WORDS, 6)) for i in range(documents)}
    queries = {f"q{i}": " ".join(rng.sample(docs[f"d{i}"].split(), 3) + [rng.choice(WORDS)]) for i in range(documents)}
    with (folder / "corpus.jsonl").open("w") as f:
        for doc_id, text in docs.items():
            f.write(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as f:
        for qid, text in queries.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    for split, ids in (("train", range(train)), ("test", range(train, documents))):
        lines = ["query-id\tcorpus-id\tscore"] + [f"q{i}\td{i}\t1" for i in ids]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


def write_toy_suite(tmp_path: Path, name: str, **overrides) -> Path:
    """A toy BEIR folder under ``tmp_path/data`` and a suite YAML on it for the tiny random model."""
    import yaml

    write_beir(Path(tmp_path) / "data", "toy")
    suite = {
        "name": name,
        "stage": "rerank",
        "model": "tiny-bert",
        "methods": "bm25,lora,full",
        "budgets": [2.0],
        "seeds": [1],
        "datasets": [{"train": "toy/train", "eval": ["toy/test"]}],
        "first_stage": {"backend": "bm25s", "depth": 5},
        "train": {"steps": 3, "batch_queries": 2, "group_size": 3, "max_length": 32},
        "eval": {"depth": 5, "batch_size": 4, "max_length": 32},
    }
    suite.update(overrides)
    path = Path(tmp_path) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


class FixedGroups:
    """Training groups given by hand: every step is this one batch (what EpochGroups hands a stage)."""

    def __init__(self, groups):
        self.groups = groups

    def batch(self, step, batch_queries):
        return self.groups

    gathered = batch
