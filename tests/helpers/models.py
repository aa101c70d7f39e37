"""Tiny random-weight transformers for unit tests."""

import torch


def tiny_config(kind: str):
    from transformers import BertConfig, MPNetConfig, RobertaConfig

    common = dict(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=64,
    )
    if kind == "bert":
        return BertConfig(**common)
    if kind == "roberta":
        return RobertaConfig(**common, pad_token_id=1)
    if kind == "mpnet":
        return MPNetConfig(**common, pad_token_id=1)
    raise ValueError(kind)


def tiny_model(kind: str = "bert", seed: int = 0, attn: str = "eager"):
    from transformers import AutoModel

    torch.manual_seed(seed)
    model = AutoModel.from_config(tiny_config(kind), attn_implementation=attn)
    return model.eval()


def tiny_llama(seed: int = 0, vocab: int = 100):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


def tiny_inputs(batch: int = 3, length: int = 7, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, -3:] = 0  # one padded row, so masks are exercised
    return {"input_ids": ids, "attention_mask": mask}


def perturb(model, seed: int = 3, scale: float = 0.05):
    """Give every trainable tensor random values so a test cannot pass on zeros."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * scale)


def encoder_methods() -> list[str]:
    """The registered methods that tune encoders (the causal-LM ones are tested in test_methods_llm)."""
    import methods

    return [n for n in methods.names() if "encoder" in methods.get_method(n).families]


def copy_lora_into_peft(ours, peft_model) -> None:
    """Give a peft LoRA model exactly the LoRA weights of our LoRA-applied copy of the same model."""
    with torch.no_grad():
        for name, module in ours.named_modules():
            if hasattr(module, "peft_lora"):
                target = peft_model.base_model.model.get_submodule(name)
                target.lora_A["default"].weight.copy_(module.peft_lora.lora_A.weight)
                target.lora_B["default"].weight.copy_(module.peft_lora.lora_B.weight)
