"""peft-ir-bench: a benchmark and leaderboard harness for parameter-efficient fine-tuning in IR."""

import os

# No foreign framework touches an accelerator: bm25s imports jax when it is installed (and runs a top-k at
# import), which would initialise JAX's CUDA backend and preallocate most of the card in every worker;
# transformers would import TensorFlow / Flax when present. The harness uses none of them on a device.
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["USE_TF"] = "0"
os.environ["USE_FLAX"] = "0"
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

__version__ = "0.1.0"
