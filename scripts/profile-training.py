"""Op profile of one training step as `bench perf` builds it (rerank, full fine-tuning, MiniLM, bf16, 256 tokens,
4 queries x 4 passages), with train_attention sdpa and parallel_dropout: docs/perf.md's profile table."""

import torch
from torch.profiler import ProfilerActivity, profile

from bench.attention import use_parallel_dropout
from bench.perf import training
from bench.stages import get_stage

STEPS = 4


def profile_step(mode: str) -> None:
    stage = get_stage("rerank")
    built, loss, _ = training.ours_setup(stage, "full", "minilm")
    if mode == "parallel_dropout":
        use_parallel_dropout(built.model)
    model = built.model.train()
    batch = stage.perf.batch(built, 256, *stage.perf.shape(4, 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = loss(model, dict(batch))
        value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):  # warm-up
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(STEPS):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(f"== {mode}: {total / STEPS / 1e6:.3f} s self CPU per step (summed over threads)")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]:
        share, ms = 100 * e.self_cpu_time_total / total, e.self_cpu_time_total / STEPS / 1e3
        print(f"{e.key:45s} {share:5.1f}%  {ms:8.1f} ms/step  calls/step {e.count // STEPS}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    for name in ("sdpa", "parallel_dropout"):
        profile_step(name)
