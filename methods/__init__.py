"""Parameter-efficient tuning methods for transformer encoders and causal LMs, on one injection mechanism.

    methods.names()                              -> registered method names
    methods.plan(config, name, budget)           -> knobs + exact counts + applicable
    methods.solve(config, name, budget_pct)      -> knobs (raises BudgetUnreachable)
    methods.apply(model, name, budget_pct=None, **knobs) -> MethodRecord
    methods.save(model, dir) / methods.load(model, dir)
    methods.export_peft_lora(model, dir)
"""
from . import adapter, iaa, lora, mam, prefix, prompt, qpeft, selective  # noqa: F401  (registers the methods)
from .arch import ARCHITECTURES, family_of
from .budget import Plan, parse_budget, plan, solve
from .core import MethodRecord, apply, apply_towers, record_of
from .errors import BudgetUnreachable, MethodError
from .io import export_peft_lora, load, save
from .prompt import soft_prompt
from .qpeft import query_hint, select_hint_tokens
from .registry import get_method, names

__all__ = [
    "ARCHITECTURES", "BudgetUnreachable", "family_of", "MethodError", "MethodRecord", "Plan", "apply", "apply_towers",
    "export_peft_lora", "get_method", "load", "names", "parse_budget", "plan", "query_hint", "record_of", "save",
    "select_hint_tokens", "soft_prompt", "solve",
]
