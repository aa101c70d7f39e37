"""Where the pieces of each supported transformer live.

Every method injects through these paths, so supporting a new architecture means adding one map.
Paths are relative to the base model (``model.base_model``) or to one layer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch.nn as nn

from .errors import MethodError


@dataclass(frozen=True)
class ArchMap:
    layers: str  # ModuleList of layers, from the base model
    self_attention: str  # module owning the q/k/v projections, from a layer
    projections: dict  # generic name (q, k, v, o) -> path from the layer
    attn_sublayer: str = ""  # attention sub-layer: input = layer input, output = after its Add & Norm
    attn_dropout: str = ""  # dropout right after the attention output projection, before Add & Norm
    ffn_block: str = ""  # module doing ffn down-projection + Add & Norm; its 2nd argument is the ffn input
    ffn_dropout: str = ""  # dropout right after the ffn down projection, before Add & Norm
    ffn_norm: str = ""  # the feed-forward sub-layer's LayerNorm (its Add & Norm)
    # positional index / keyword of tensors in the self-attention call whose key axis must widen
    # for prefix tuning (additive masks and biases)
    widen_args: tuple = ("attention_mask",)
    # "encoder" (post-norm BERT-like: every method) or "causal-lm" (pre-norm decoders: the methods whose
    # Method.families name it; the sub-layer paths above are empty there)
    family: str = "encoder"


_BERT_LIKE = ArchMap(
    layers="encoder.layer",
    self_attention="attention.self",
    projections={
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "o": "attention.output.dense",
    },
    attn_sublayer="attention",
    attn_dropout="attention.output.dropout",
    ffn_block="output",
    ffn_dropout="output.dropout",
    ffn_norm="output.LayerNorm",
)

_MPNET = replace(
    _BERT_LIKE,
    self_attention="attention.attn",
    projections={"q": "attention.attn.q", "k": "attention.attn.k", "v": "attention.attn.v", "o": "attention.attn.o"},
    attn_dropout="attention.dropout",
    widen_args=("attention_mask", "position_bias"),
)

# pre-norm decoders: no sub-layer paths (only the methods whose Method.families name causal-lm tune them)
_LLAMA_LIKE = ArchMap(
    layers="layers",
    self_attention="self_attn",
    projections={"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj"},
    family="causal-lm",
)

ARCHITECTURES = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "camembert": _BERT_LIKE,
    "mpnet": _MPNET,
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
}


def family_of(config) -> str | None:
    """ "encoder", "causal-lm", or None for an architecture without a map (only whole-tensor methods)."""
    arch = ARCHITECTURES.get(getattr(config, "model_type", None))
    return arch.family if arch else None


def arch_for(base_model: nn.Module) -> ArchMap:
    model_type = getattr(getattr(base_model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise MethodError(
            f"unsupported architecture {model_type!r}: supported are {', '.join(sorted(ARCHITECTURES))}"
            " (add an ArchMap in methods/arch.py for another)"
        )
    if getattr(base_model.config, "position_embedding_type", "absolute") != "absolute":
        raise MethodError(
            "only absolute position embeddings are supported; "
            f"this model uses {base_model.config.position_embedding_type!r}"
        )
    return ARCHITECTURES[model_type]


def get(module: nn.Module, path: str) -> nn.Module:
    return module.get_submodule(path) if path else module


def layers(base_model: nn.Module, arch: ArchMap) -> list[nn.Module]:
    return list(get(base_model, arch.layers))


def find_base_model(model: nn.Module) -> nn.Module:
    """The transformer inside ``model``: itself, its ``base_model``, or its first PreTrainedModel child."""
    from transformers import PreTrainedModel

    if isinstance(model, PreTrainedModel):
        return model.base_model
    for child in model.modules():
        if isinstance(child, PreTrainedModel):
            return child.base_model
    raise MethodError(f"{type(model).__name__} contains no transformers PreTrainedModel to tune")
