"""Attention whose dropout masks are drawn on every core (the training setting ``train_attention:
parallel_dropout``).

On the CPU, torch draws a dropout mask with one mt19937 stream on one core, and a dropout on the
attention probabilities keeps SDPA off its fused kernel, on a math path that works in fp32: at 256 tokens
the masks alone were a quarter of a MiniLM step (docs/perf.md). This function is that math written out as
transformers' eager attention does it under autocast (scores, mask, softmax, dropout, values, in the
autocast dtype) with the keep-mask drawn in a fixed number of chunks, each from its own generator seeded
from the global one: the same Bernoulli(1 - p) law and the same numbers for a seed whatever the thread
count, but not the stream torch's own dropout draws. Without dropout (evaluation, p 0) and on a GPU,
where SDPA's dropout is fused, it is SDPA itself."""

from __future__ import annotations

import functools
import math
import sys
from concurrent.futures import ThreadPoolExecutor

import torch

from .errors import BenchError

NAME = "bench_parallel_dropout"
CHUNKS = 8  # fixed, so a seed gives the same masks on any number of threads


@functools.lru_cache(maxsize=1)
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="dropout-mask")


def keep_mask(shape: tuple[int, ...], p: float, device="cpu") -> torch.Tensor:
    """A boolean mask, True with probability 1 - p, drawn in ``CHUNKS`` chunks on a thread pool."""
    mask = torch.empty(shape, dtype=torch.bool, device=device)
    seeds = torch.randint(0, 2**62, (CHUNKS,), dtype=torch.int64).tolist()  # from the global generator
    flat = mask.view(-1)
    chunks = [c for c in flat.tensor_split(CHUNKS) if c.numel()]

    def draw(pair):
        chunk, seed = pair
        chunk.bernoulli_(1.0 - p, generator=torch.Generator(device=device).manual_seed(seed))

    list(_pool(max(1, torch.get_num_threads())).map(draw, zip(chunks, seeds)))
    return mask


def _sdpa(*args, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(*args, **kwargs)


def parallel_dropout_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
):
    """transformers' attention-function signature: (batch, heads, length, dim) in, (batch, length, heads,
    dim) out, as ``sdpa_attention_forward``."""
    if dropout == 0.0 or query.device.type != "cpu" or kwargs.get("position_bias") is not None:
        return _sdpa(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scaling = 1.0 / math.sqrt(query.shape[-1]) if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", False)
    if attention_mask is None and causal and query.shape[2] > 1:
        attention_mask = torch.ones(query.shape[2], key.shape[2], dtype=torch.bool, device=query.device).tril()
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1)
    kept = torch.where(keep_mask(tuple(probs.shape), dropout, probs.device), probs, 0.0)
    out = torch.matmul(kept, value) * (1.0 / (1.0 - dropout))  # the 1 / (1 - p) on the smaller tensor
    return out.transpose(1, 2).contiguous(), None


@functools.lru_cache(maxsize=1)
def register() -> str:
    """Register the function and SDPA's mask format under ``NAME`` with transformers."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, parallel_dropout_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def dispatches(module: torch.nn.Module) -> bool:
    """Whether the module's modeling file looks its attention up in transformers' ``AttentionInterface``
    (transformers 5's BERT does; 4.57's BERT picks a fixed SDPA class at construction)."""
    return getattr(sys.modules.get(type(module).__module__), "ALL_ATTENTION_FUNCTIONS", None) is not None


def _transformers_models(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if hasattr(m, "base_model_prefix") and hasattr(m, "config")]


def can_switch(model: torch.nn.Module) -> bool:
    """Whether every transformers model inside ``model`` dispatches its attention (so the setting can run)."""
    return all(dispatches(m) for m in _transformers_models(model))


def use_parallel_dropout(model: torch.nn.Module) -> int:
    """Switch every transformers model inside ``model`` (towers included) from SDPA to this function;
    the number switched. Models on another implementation (eager, flash) are left as they are; a model
    on SDPA that cannot switch, or nothing to switch at all, is an error, never a silent SDPA run."""
    name = register()
    switched = 0
    found = set()
    for module in _transformers_models(model):
        config = module.config
        found.add(str(getattr(config, "_attn_implementation", None)))
        if getattr(config, "_attn_implementation", None) not in ("sdpa", name):
            continue
        if not dispatches(module):
            import transformers

            raise BenchError(
                f"train_attention: parallel_dropout: {type(module).__name__} on transformers "
                f"{transformers.__version__} does not dispatch its attention through AttentionInterface; "
                "use train_attention: sdpa or transformers 5"
            )
        if hasattr(module, "set_attn_implementation"):
            module.set_attn_implementation(name)
        else:  # transformers before set_attn_implementation
            config._attn_implementation = name
        switched += 1
    if not switched:
        raise BenchError(
            f"train_attention: parallel_dropout: no SDPA attention to switch in this model (attention: "
            f"{', '.join(sorted(found)) or 'none'}); use train_attention: sdpa"
        )
    return switched
