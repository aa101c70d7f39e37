"""Parameter-efficient tuning methods for transformer encoders and causal LMs, on one injection mechanism.

    methods.names()                              -> registered method names
    methods.plan(config, name, budget)           -> knobs + exact counts + applicable
    methods.solve(config, name, budget_pct)      -> knobs (raises BudgetUnreachable)
    methods.apply(model, name, budget_pct=None, **knobs) -> MethodRecord
    methods.save(model, dir) / methods.load(model, dir)
    methods.export_peft_lora(model, dir)

Layers (imports point one way): registry <- core (inject, count) <- count <- budget <- api <- io;
the method families register themselves on import.
"""

from . import adapter, iaa, lora, mam, prefix, prompt, qpeft, selective  # noqa: F401  (registers the methods)
from .api import apply, apply_towers
from .arch import ARCHITECTURES, family_of
from .budget import Plan, parse_budget, plan, solve
from .core import MethodRecord, record_of
from .errors import BudgetUnreachable, MethodError
from .io import export_peft_lora, folded_state, from_pretrained, load, save
from .prompt import PromptInputs, PromptPart, prompt_parts, soft_prompt
from .qpeft import query_hint, select_hint_tokens
from .registry import TOKEN_SOURCES, get_method, names

__all__ = [
    "ARCHITECTURES",
    "BudgetUnreachable",
    "family_of",
    "MethodError",
    "MethodRecord",
    "Plan",
    "PromptInputs",
    "PromptPart",
    "TOKEN_SOURCES",
    "apply",
    "apply_towers",
    "export_peft_lora",
    "folded_state",
    "from_pretrained",
    "get_method",
    "load",
    "names",
    "parse_budget",
    "plan",
    "prompt_parts",
    "query_hint",
    "record_of",
    "save",
    "select_hint_tokens",
    "soft_prompt",
    "solve",
]
