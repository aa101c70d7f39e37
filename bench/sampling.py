"""Training examples shared by the stages: per epoch, one positive and first-stage negatives per query."""

from __future__ import annotations

import random

from .data import Collection
from .errors import BenchError


def training_queries(train: Collection, rng: random.Random, max_queries: int | None = None) -> list[str]:
    """The judged queries training draws from (a fixed, seeded subset when ``max_queries`` is set)."""
    query_ids = [q for q in train.queries if any(g > 0 and d in train.corpus for d, g in train.qrels[q].items())]
    rng.shuffle(query_ids)
    return query_ids[:max_queries] if max_queries else query_ids


def split_queries(train: Collection, seed: int, max_queries: int | None = None, dev_queries: int = 0):
    """(dev, training) query ids: one seeded order of the judged queries, the first ``dev_queries`` held out
    for the dev loss, then up to ``max_queries`` for training (drawn after the dev ones: max_queries leaves
    them be)."""
    judged = training_queries(train, random.Random(seed))
    if dev_queries and dev_queries >= len(judged):
        raise BenchError(
            f"dev_queries {dev_queries}: the training data has {len(judged)} judged queries; hold out fewer"
        )
    rest = judged[dev_queries:]
    return judged[:dev_queries], rest[:max_queries] if max_queries else rest


def training_groups(
    train: Collection, candidates: dict, query_ids: list[str], group_size: int, rng: random.Random
) -> list[tuple[str, str, list[str]]]:
    """One group (query, positive, negatives) per query, in a shuffled order; negatives from the first
    stage's unjudged-or-irrelevant candidates, topped up with random corpus documents if too few."""
    doc_ids = list(train.corpus)
    order = list(query_ids)
    rng.shuffle(order)
    groups = []
    for q in order:
        positives = [d for d, g in train.qrels[q].items() if g > 0 and d in train.corpus]
        pool = [d for d in candidates.get(q, {}) if train.qrels[q].get(d, 0) <= 0]
        negatives = rng.sample(pool, min(len(pool), group_size - 1))
        while len(negatives) < group_size - 1:
            d = rng.choice(doc_ids)
            if train.qrels[q].get(d, 0) <= 0 and d not in negatives:
                negatives.append(d)
        groups.append((q, rng.choice(positives), negatives))
    return groups


class EpochGroups:
    """Training groups drawn afresh every epoch: a new order, positive and negatives per query, so a
    second epoch does not replay the first. Seeded per (seed, epoch): reruns give the same groups."""

    def __init__(
        self,
        train: Collection,
        candidates: dict,
        group_size: int,
        seed: int,
        max_queries: int | None = None,
        dev_queries: int = 0,
    ):
        self.train, self.candidates, self.group_size, self.seed = train, candidates, group_size, seed
        self.dev_ids, self.query_ids = split_queries(train, seed, max_queries, dev_queries)
        self._epoch, self._groups = -1, []

    def dev(self) -> FixedGroups:
        """The held-out queries' groups, drawn once: the same dev loss data after every epoch."""
        rng = random.Random(self.seed * 1_000_003 - 1)
        return FixedGroups(training_groups(self.train, self.candidates, self.dev_ids, self.group_size, rng))

    def __len__(self) -> int:
        return len(self.query_ids)

    def epoch(self, epoch: int) -> list[tuple[str, str, list[str]]]:
        if epoch != self._epoch:
            rng = random.Random(self.seed * 1_000_003 + epoch)
            self._epoch, self._groups = (
                epoch,
                training_groups(self.train, self.candidates, self.query_ids, self.group_size, rng),
            )
        return self._groups

    def batch(self, step: int, batch_queries: int) -> list[tuple[str, str, list[str]]]:
        """The ``batch_queries`` consecutive groups of ``step``; the epoch follows from the position,
        so any step can be rebuilt on its own."""
        return [
            self.epoch(position // len(self))[position % len(self)]
            for position in range(step * batch_queries, (step + 1) * batch_queries)
        ]

    def gathered(self, step: int, batch_queries: int) -> list[tuple[str, str, list[str]]]:
        """The step's whole batch in the order a gather over ranks puts it (one process: the batch)."""
        return self.batch(step, batch_queries)


class FixedGroups:
    """A fixed list of groups served in batches (the dev loss's data): ``batch(i, n)`` is the i-th n."""

    def __init__(self, groups: list[tuple[str, str, list[str]]]):
        self.groups = groups

    def __len__(self) -> int:
        return len(self.groups)

    def steps(self, batch_queries: int) -> int:
        return -(-len(self.groups) // batch_queries)

    def batch(self, step: int, batch_queries: int) -> list[tuple[str, str, list[str]]]:
        return self.groups[step * batch_queries : (step + 1) * batch_queries]

    gathered = batch


class RankShard:
    """This process's share of every step under data parallelism: rank r takes groups r, r+world, ...
    of the step's batch, so the ranks together see exactly the single-process batch."""

    def __init__(self, groups: EpochGroups, rank: int, world: int):
        self.groups, self.rank, self.world = groups, rank, world

    def __len__(self) -> int:
        return len(self.groups)

    def batch(self, step: int, batch_queries: int) -> list[tuple[str, str, list[str]]]:
        return self.groups.batch(step, batch_queries)[self.rank :: self.world]

    def gathered(self, step: int, batch_queries: int) -> list[tuple[str, str, list[str]]]:
        """The step's whole batch in gather order: rank 0's share, then rank 1's, ..."""
        whole = self.groups.batch(step, batch_queries)
        return [group for rank in range(self.world) for group in whole[rank :: self.world]]
