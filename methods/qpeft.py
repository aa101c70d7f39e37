"""Q-PEFT (Peng et al., arXiv 2404.04522): a query-dependent hint spliced into a causal LM's prompt.

Both variants read the query through a trainable copy of the embedding table and the context (the
document) through the frozen one, make hint vectors, pass them through a two-layer MLP (d -> d -> d;
``mlp=original``: Linear -> ReLU -> Linear with PyTorch's default initialisation, its output replacing
the hint, as the authors' code; ``mlp=residual``: the hint plus a zero-initialised bottleneck, so a fresh
hint is the plain tokens) and return them for the caller to splice into the prompt:
- ``qpeft-r``: the k context tokens most similar to the query, as tokens ("hints: t1 .. tk\\n");
  the selection takes no gradient, the rows of the hint's tokens and the MLP do.
  Fewer than k candidates (``short=resample``, the original): k draws with replacement from those there
  are; ``short=mask``: the empty slots are masked out of attention.
- ``qpeft-a``: a multi-head attention layer (queries: the query tokens; keys, values: the context
  tokens; dropout ``attention_dropout``, 0.1 as the original, while training) whose |q| outputs are the
  hint. Fully differentiable.

The original copies the whole embedding matrix as trainable (|V| x d). With ``table=sparse`` only the
rows given as ``token_ids`` to ``methods.apply`` are copied and counted (every other row could never
receive a gradient); ``table=full`` is the original.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .errors import MethodError
from .inject import attach
from .modules import Bottleneck
from .prompt import PromptInputs, PromptPart, prompt_parts
from .registry import Knob, Method, register

NAME = "query_hint"


class QueryTable(nn.Module):
    """Trainable copies of some rows of a frozen embedding table; other ids read the frozen rows."""

    def __init__(self, frozen: nn.Embedding, token_ids):
        super().__init__()
        vocab, d = frozen.weight.shape
        on_meta = frozen.weight.device.type == "meta"
        ids = (
            torch.arange(vocab)
            if token_ids is None
            else torch.tensor(sorted(set(int(t) for t in token_ids)), dtype=torch.long)
        )
        if len(ids) and (ids.min() < 0 or ids.max() >= vocab):
            raise MethodError(f"token ids must lie in the vocabulary [0, {vocab})")
        object.__setattr__(self, "frozen", frozen)  # not a child: the backbone owns and counts it
        self.rows = nn.Parameter(torch.empty(len(ids), d, device="meta" if on_meta else None))
        self.register_buffer("row_ids", ids)
        slot = torch.full((vocab,), -1, dtype=torch.long)
        slot[ids] = torch.arange(len(ids))
        self.register_buffer("slot", slot, persistent=False)
        if not on_meta:
            with torch.no_grad():
                self.rows.copy_(frozen.weight[ids].float())

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        slots = self.slot[token_ids]
        trained = self.rows[slots.clamp(min=0)]
        return torch.where((slots >= 0).unsqueeze(-1), trained.to(self.frozen.weight.dtype), self.frozen(token_ids))


@torch.no_grad()
def select_hint_tokens(
    query_vectors, query_mask, context_vectors, context_ids, candidate_mask, exclude_ids, k: int, short: str = "mask"
):
    """Per example, the k distinct context tokens most similar to any query token.

    Similarity: sigmoid(cosine) between every query and context vector; padding queries and positions
    outside ``candidate_mask`` (padding, the query's own positions) never count; ``exclude_ids``
    (special tokens) are dropped and every token id counts once, at its best position: exactly the
    global ranking of (query token, position) pairs read from the top with duplicates dropped.
    Returns (ids (B, k), valid (B, k)); valid is False where fewer than k tokens qualify (``short=mask``);
    ``short=resample`` fills such a row with k draws, with replacement, from its qualifying tokens (the
    authors' code draws from the global RNG; here a generator seeded by the row's tokens, so the same input
    gets the same hint on every run).
    """
    q = nn.functional.normalize(query_vectors.float(), dim=-1)
    c = nn.functional.normalize(context_vectors.float(), dim=-1)
    scores = torch.sigmoid(q @ c.transpose(1, 2))  # (B, Lq, L)
    scores = scores.masked_fill(~query_mask.bool().unsqueeze(2), -1.0)
    best = scores.max(dim=1).values.float().masked_fill(~candidate_mask.bool(), -1.0)  # (B, L); sigmoid > 0
    vocab = int(max(context_ids.max().item(), max(exclude_ids, default=0))) + 1
    per_token = torch.full((len(best), vocab), -1.0, device=best.device)
    per_token.scatter_reduce_(1, context_ids, best, reduce="amax")
    if exclude_ids:
        per_token[:, torch.tensor(list(exclude_ids), device=best.device)] = -1.0
    top = per_token.topk(min(k, vocab), dim=1)
    ids, valid = top.indices, top.values > 0
    if ids.shape[1] < k:  # a tiny vocabulary: pad with invalid slots
        pad = k - ids.shape[1]
        ids = torch.cat([ids, ids.new_zeros(len(ids), pad)], 1)
        valid = torch.cat([valid, valid.new_zeros(len(valid), pad)], 1)
    if short == "resample":
        ids, valid = _resampled(ids, valid, k)
    return ids, valid


def _resampled(ids: torch.Tensor, valid: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids, valid = ids.clone(), valid.clone()
    for row in range(len(ids)):
        have = int(valid[row].sum())
        if 0 < have < k:
            seed = int(torch.sum(ids[row, :have] * torch.arange(1, have + 1, device=ids.device)).item()) % (2**31)
            draws = torch.randint(have, (k,), generator=torch.Generator().manual_seed(seed)).to(ids.device)
            ids[row] = ids[row, :have][draws]
            valid[row] = True
    return ids, valid


class OriginalMLP(nn.Module):
    """Linear -> ReLU -> Linear (d -> d -> d), PyTorch's default initialisation: the authors' hint MLP."""

    def __init__(self, d: int, device=None):
        super().__init__()
        self.down = nn.Linear(d, d, device=device)
        self.up = nn.Linear(d, d, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(torch.relu(self.down(x)))


MLPS = ("original", "residual")


class QueryHint(PromptPart):
    """Hint vectors for a (query, context) batch; subclasses make the core, this wraps and maps it."""

    slot = "hint"

    def __init__(
        self,
        frozen: nn.Embedding,
        token_ids,
        mlp: str = "original",
        template_tokens: bool = True,
        score_special_tokens: bool = True,
    ):
        super().__init__()
        self.template_tokens = bool(template_tokens)
        # read by the caller that scores the query (the qlm stage): BOS and EOS around it count too
        self.score_special_tokens = bool(score_special_tokens)
        if mlp not in MLPS:
            raise MethodError(f"qpeft mlp={mlp!r}: choose original (the authors' Linear-ReLU-Linear) or residual")
        d = frozen.weight.shape[1]
        self.table = QueryTable(frozen, token_ids)
        self.residual = mlp == "residual"
        if self.residual:  # zero-initialised: a fresh hint is the plain tokens
            self.mlp = Bottleneck(d, d)
        else:
            self.mlp = OriginalMLP(d, device="meta" if frozen.weight.device.type == "meta" else None)

    def core(self, query_ids, query_mask, context_ids, context_mask, exclude_ids):
        raise NotImplementedError

    def context(self, inputs: PromptInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """What the hint reads: the passage, within the prompt's own tokens around it (``template_tokens``,
        as the authors' code, whose candidates and keys are the prompt's tokens before the question) or
        alone."""
        if not self.template_tokens:
            return inputs.context_ids, inputs.context_mask
        batch, device = len(inputs.context_ids), inputs.context_ids.device
        blocks = [
            torch.as_tensor(ids, dtype=torch.long, device=device)
            for ids in (inputs.context_prefix_ids, inputs.context_suffix_ids)
        ]
        ids = [b.unsqueeze(0).expand(batch, -1) for b in blocks]
        masks = [torch.ones_like(i, dtype=torch.bool) for i in ids]
        return (
            torch.cat([ids[0], inputs.context_ids, ids[1]], dim=1),
            torch.cat([masks[0], inputs.context_mask.bool(), masks[1]], dim=1),
        )

    def forward(self, inputs: PromptInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """(hint (B, H, d), mask (B, H)): "prefix core suffix" mapped by the MLP; the mask is False on
        core slots that carry nothing (the caller masks them out of attention)."""
        context_ids, context_mask = self.context(inputs)
        vectors, mask = self.core(inputs.query_ids, inputs.query_mask, context_ids, context_mask, inputs.exclude_ids)
        batch = len(vectors)
        wrap = [
            self.table(torch.as_tensor(ids, dtype=torch.long, device=vectors.device)).unsqueeze(0).expand(batch, -1, -1)
            for ids in (inputs.hint_prefix_ids, inputs.hint_suffix_ids)
        ]
        hint = torch.cat([wrap[0], vectors.to(wrap[0].dtype), wrap[1]], dim=1)
        ones = [mask.new_ones(batch, len(ids)) for ids in (inputs.hint_prefix_ids, inputs.hint_suffix_ids)]
        mapped = hint + self.mlp(hint) if self.residual else self.mlp(hint)
        return mapped, torch.cat([ones[0], mask, ones[1]], dim=1)


class RetrievedHint(QueryHint):
    def __init__(
        self,
        frozen: nn.Embedding,
        token_ids,
        k: int,
        mlp: str = "original",
        short: str = "resample",
        template_tokens: bool = True,
        score_special_tokens: bool = True,
    ):
        super().__init__(frozen, token_ids, mlp, template_tokens, score_special_tokens)
        if short not in ("resample", "mask"):
            raise MethodError(f"qpeft-r short={short!r}: choose resample (the original) or mask")
        self.k, self.short = k, short

    def core(self, query_ids, query_mask, context_ids, context_mask, exclude_ids):
        ids, valid = select_hint_tokens(
            self.table(query_ids),
            query_mask,
            self.table.frozen(context_ids),
            context_ids,
            context_mask,
            exclude_ids,
            self.k,
            self.short,
        )
        return self.table(ids), valid


class AttendedHint(QueryHint):
    def __init__(
        self,
        frozen: nn.Embedding,
        token_ids,
        heads: int,
        mlp: str = "original",
        attention_dropout: float = 0.1,
        template_tokens: bool = True,
        score_special_tokens: bool = True,
    ):
        super().__init__(frozen, token_ids, mlp, template_tokens, score_special_tokens)
        d = frozen.weight.shape[1]
        if d % heads:
            raise MethodError(f"qpeft-a heads={heads} must divide the hidden size {d}")
        device = "meta" if frozen.weight.device.type == "meta" else None
        self.attention = nn.MultiheadAttention(d, heads, dropout=attention_dropout, batch_first=True, device=device)

    def core(self, query_ids, query_mask, context_ids, context_mask, exclude_ids):
        keys = self.table.frozen(context_ids)
        ignore = ~context_mask.bool()
        ignore[ignore.all(dim=1), 0] = False  # an empty context: attend to its first slot, not to nothing
        out, _ = self.attention(self.table(query_ids), keys, keys, key_padding_mask=ignore, need_weights=False)
        return out, query_mask.bool()


def _table_rows(table: str, token_ids, frozen: nn.Embedding):
    if table == "full":
        return None
    if table != "sparse":
        raise MethodError(f"qpeft table={table!r}: choose sparse (the rows given) or full (every row)")
    if token_ids is None and frozen.weight.device.type != "meta":
        raise MethodError(
            "qpeft with table=sparse needs token_ids (the vocabulary rows that may train); "
            "pass them to methods.apply or use table=full"
        )
    return token_ids or []


def insert_hint(base, arch, cls, token_ids, table: str, **kwargs) -> None:
    frozen = base.get_input_embeddings()
    attach(base, NAME, cls(frozen, _table_rows(table, token_ids, frozen), **kwargs))


def query_hint(model: nn.Module) -> QueryHint | None:
    """The Q-PEFT hint module applied to ``model`` (or None)."""
    return prompt_parts(model).get("hint")


TABLE = Knob("table", str, "sparse", None, "sparse: train only the rows given as token_ids; full: all |V| rows")
MLP = Knob("mlp", str, "original", None, "original: Linear-ReLU-Linear replacing the hint (the authors'); residual")
TEMPLATE = Knob(
    "template_tokens",
    int,
    1,
    0,
    "1: the hint reads the prompt's tokens around the passage too (the original); 0: the passage",
)
SPECIAL = Knob("score_special_tokens", int, 1, 0, "1: the score reads BOS and EOS around the query too (original)")


def _register(name: str, summary: str, cls, knobs: tuple, token_sources: tuple, revision: int) -> None:
    def inject(base, arch, table, token_ids=None, **knobs):
        insert_hint(base, arch, cls, token_ids, table, **knobs)

    register(
        Method(
            name=name,
            summary=summary,
            inject=inject,
            knobs=(*knobs, TABLE, MLP, TEMPLATE, SPECIAL),
            families=("causal-lm",),
            token_sources=token_sources,
            revision=revision,
        )
    )


# qpeft-r: only rows that can receive a gradient, the hint's tokens (drawn from passages) and its wrapper; the
# query's rows steer the selection, which takes no gradient
_register(
    "qpeft-r",
    "Q-PEFT retrieval: the k context tokens nearest the query as a hint (selection not differentiable)",
    RetrievedHint,
    (
        Knob("k", int, 10, 1, "hint tokens"),
        Knob("short", str, "resample", None, "fewer than k candidates: resample with replacement (original) or mask"),
    ),
    ("hint_wrapper", "train_passages", "template"),
    3,  # 3: the authors' MLP and resampling; 2: only the reachable rows, the table without weight decay
)
# qpeft-a: the query's rows (the attention's queries) and the wrapper; passages are read through the frozen table
_register(
    "qpeft-a",
    "Q-PEFT attention: multi-head attention from query to context tokens makes the hint",
    AttendedHint,
    (
        Knob("heads", int, 2, 1, "attention heads"),
        Knob("attention_dropout", float, 0.1, 0.0, "dropout of the attention while training (0.1: the original)"),
    ),
    ("hint_wrapper", "train_queries"),
    3,  # 3: the authors' MLP and attention dropout; 2: the table takes no weight decay (methods/decay.py)
)
