"""Two processes on one CPU (gloo) computing the dense stage's gathered in-batch loss, for comparison with
one process on the whole batch."""

import os

import torch


def dense_model(seed: int = 0):
    from bench.stages.dense import BiEncoder
    from helpers.models import tiny_model

    backbone = tiny_model("bert", seed=seed)
    backbone.pooler = None  # as the dense stage builds it
    return BiEncoder(backbone, "mean", "cos").eval()  # no dropout: the two layouts must compute the same numbers


def dense_batch(seed: int = 1, queries: int = 4, group: int = 2):
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(5, 120, (queries, 6), generator=g)
    d = torch.randint(5, 120, (queries * group, 9), generator=g)
    exclude = torch.zeros(queries, queries * group, dtype=torch.bool)
    exclude[0, 2] = True  # query 0's judged-relevant document is query 1's positive
    return {
        "q_input_ids": q,
        "q_attention_mask": torch.ones_like(q),
        "d_input_ids": d,
        "d_attention_mask": torch.ones_like(d),
        "group_size": group,
        "exclude": exclude,
    }


def shard(batch: dict, rank: int, world: int) -> dict:
    """Rank ``rank``'s share, as RankShard deals groups (r, r + world, ...); ``exclude`` stays whole, in
    gathered (rank-major) order."""
    queries, group = len(batch["q_input_ids"]), batch["group_size"]
    mine = list(range(rank, queries, world))
    order = [i for r in range(world) for i in range(r, queries, world)]
    docs = [i * group + j for i in mine for j in range(group)]
    all_docs = [i * group + j for i in order for j in range(group)]
    out = {k: v[mine] for k, v in batch.items() if k.startswith("q_")}
    out.update({k: v[docs] for k, v in batch.items() if k.startswith("d_")})
    out["exclude"] = batch["exclude"][order][:, all_docs]
    out["group_size"] = group
    return out


def worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    from bench.stages.dense import contrastive_loss

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model, loss_fn = dense_model(), contrastive_loss(0.05, distributed=True)
    loss = loss_fn(model, shard(dense_batch(), rank, world))
    (loss * world).backward()  # what the train loop does for a global-batch loss
    for p in model.parameters():  # what DDP does: average the gradients over the ranks
        dist.all_reduce(p.grad)
        p.grad /= world
    if rank == 0:
        torch.save(
            {"loss": loss.detach(), "grads": {n: p.grad for n, p in model.named_parameters()}},
            os.path.join(out_dir, "two.pt"),
        )
    dist.destroy_process_group()
