"""Methods that train a subset of the backbone's own tensors: full fine-tuning and BitFit."""

from .registry import Method, register

FULL = register(
    Method(
        name="full",
        summary="every backbone parameter trains (the reference)",
        selects=lambda name, param: True,
        families=("encoder", "causal-lm"),
        reference=True,
        revision=2,  # 2: embedding tables take no weight decay (methods/decay.py)
    )
)

BITFIT = register(
    Method(
        name="bitfit",
        summary="every bias term of the backbone trains (attention, feed-forward, LayerNorm, pooler)",
        selects=lambda name, param: name.endswith("bias"),
    )
)
