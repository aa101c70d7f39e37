"""The search: every searched configuration of a method trained on the search seeds and scored on validation
data alone, one configuration selected per (stage, datasets, method, budget) on its mean validation score,
then the selected configuration's remaining seeds run and every selected cell is scored on the test data.

The expansion (``plan``) turns a suite's ``search:`` into configurations (after HELM's run-spec expansion:
one function, many cells); ``select_on_validation`` is the one selecting function and is handed validation
scores alone, so a test metric cannot reach it. What a selected cell won against is recorded in its
result (``selection``), and the report reads it from there (``bench.report.search_views``).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field

from .cells import Cell, expand
from .errors import BenchError
from .stages import get_stage
from .store import RunStore

TIE_RULE = "highest mean validation score over the search seeds; ties (equal to 1e-12): the value listed first"


def select_on_validation(candidates: dict[str, list[float]]) -> str | None:
    """The configuration (key) with the highest mean validation score; a tie goes to the configuration
    listed first. Configurations with no score (every search seed failed) are out; None if none is left."""
    best, best_mean = None, -math.inf
    for key, scores in candidates.items():
        if not scores:
            continue
        mean = sum(scores) / len(scores)
        if mean > best_mean + 1e-12:
            best, best_mean = key, mean
    return best


def configurations(search: dict, method: str) -> list[dict]:
    """The searched settings of ``method`` in declaration order: the product of each setting's values (its
    own list where the search names the method, else the ``default`` list); [{}] when nothing is searched."""
    axes = []
    for key, spec in search.items():
        values = spec.get(method, spec.get("default")) if isinstance(spec, dict) else spec
        if values:
            axes.append([(key, v) for v in values])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def label(config: dict) -> str:
    return json.dumps(config, sort_keys=True, default=str)


@dataclass
class Group:
    """One (stage, datasets, method, budget) of the grid: its cells at the suite's settings (one per seed)
    and the configurations to try."""

    cells: list[Cell]
    configs: list[dict]
    search_seeds: list[int]
    capped: dict  # search_train: settings of the search cells alone
    metric: str
    searched: dict = field(default_factory=dict)
    extend: dict = field(default_factory=dict)  # setting -> values added beyond each edge at most (search_extend)
    # search_centre: (setting, the group at the neighbouring budget toward the anchor) whose winner this
    # group's values are centred on; this group's search waits for that selection
    centre: tuple[str, Group] | None = None

    @property
    def key(self) -> tuple:
        c = self.cells[0]
        return (c.stage, json.dumps(c.datasets, sort_keys=True), c.method, c.budget)

    def _with(self, cell: Cell, config: dict, **changes) -> Cell:
        stage = get_stage(cell.stage)
        train = stage.Train(**{**cell.train, **config, **changes.pop("train", {})}).model_dump()
        return cell.replace(train=train, **changes)

    def start_configs(self, store: RunStore | None = None) -> list[dict]:
        """The configurations the search starts from: the suite's, or with ``search_centre`` the suite's
        values scaled so that their median is the neighbouring budget's winner ([] while that one is
        unselected). Without a store: the suite's (what counts and input checks use)."""
        if self.centre is None or store is None:
            return list(self.configs)
        winner = self.centre_value(store)
        if winner is None:  # the neighbour still searching; one that ran and selected nothing: the suite's values
            neighbour = self.centre[1]
            settled = neighbour.configs_now(store) and not neighbour.pending_search(store)
            return list(self.configs) if settled else []
        axis = self.centre[0]
        values = sorted(float(c[axis]) for c in self.configs)  # --search gives text ("1e-3")
        half = len(values) // 2  # the median: the middle value (an odd count), else the two middle ones' geometric mean
        middle = values[half] if len(values) % 2 else math.sqrt(values[half - 1] * values[half])
        return [{**c, axis: float(f"{float(c[axis]) * winner / middle:.3g}")} for c in self.configs]

    def centre_value(self, store: RunStore) -> float | None:
        """The neighbouring budget's selected value of the centred setting, None until it is selected."""
        axis, neighbour = self.centre
        chosen = neighbour.chosen(store)
        return None if chosen is None else float(chosen[axis])

    def waiting(self, store: RunStore) -> bool:
        """A centred search whose neighbouring budget has no winner yet."""
        return self.centre is not None and not self.start_configs(store)

    def chosen(self, store: RunStore) -> dict | None:
        """The selected configuration, None while a search cell is unfinished or none has a score."""
        configs = self.configs_now(store)
        if not configs or self.pending_search(store):
            return None
        scores = self.scores(store, configs)
        chosen = select_on_validation({k: list(v.values()) for k, v in scores.items()})
        return None if chosen is None else next(c for c in configs if label(c) == chosen)

    def configs_now(self, store: RunStore | None = None) -> list[dict]:
        """The configurations searched so far: the start (``start_configs``), then, while every cell of them
        is finished and the best sits at an edge of an extended setting, the next value beyond that edge (the
        ratio of the edge to its neighbour), up to ``extend`` values a side. Without a store: the suite's."""
        configs = self.start_configs(store)
        if not configs:
            return configs
        axis = self._extended_axis()
        if store is None or axis is None:
            return configs
        added = {"low": 0, "high": 0}
        while True:
            if any(not _settled(store.state(c)) for config in configs for c in self.searched_cells(config)):
                return configs
            edge = self._edge(configs, axis, store)
            if edge is None or added[edge] >= self.extend[axis]:
                return configs
            configs.append({axis: _beyond(sorted(c[axis] for c in configs), edge)})
            added[edge] += 1

    def _extended_axis(self) -> str | None:
        """The setting to extend: one searched numeric setting named in ``extend`` (a search over several
        settings is never extended)."""
        keys = {k for c in self.configs for k in c}
        if len(keys) != 1 or next(iter(keys)) not in self.extend:
            return None
        axis = next(iter(keys))
        values = [c[axis] for c in self.configs]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values)
        return axis if numeric and len(set(values)) >= 2 else None

    def _edge(self, configs: list[dict], axis: str, store: RunStore) -> str | None:
        """ "low" or "high" when the best configuration holds the lowest or highest value tried, else None."""
        scores = self.scores(store, configs)
        chosen = select_on_validation({k: list(v.values()) for k, v in scores.items()})
        if chosen is None:
            return None
        value = next(c for c in configs if label(c) == chosen)[axis]
        values = [c[axis] for c in configs]
        return "high" if value == max(values) else ("low" if value == min(values) else None)

    def searched_cells(self, config: dict) -> list[Cell]:
        seeds = [c for c in self.cells if c.seed in self.search_seeds]
        return [self._with(c, config, train=self.capped, scoring="validation") for c in seeds]

    def search_cells(self, store: RunStore | None = None) -> list[Cell]:
        return [c for config in self.configs_now(store) for c in self.searched_cells(config)]

    def scores(self, store: RunStore, configs: list[dict] | None = None) -> dict[str, dict[int, float]]:
        """Per configuration: search seed -> validation score of its finished search cells (validation
        metrics only: ``CellResult.validation``)."""
        out: dict[str, dict[int, float]] = {}
        for config in configs if configs is not None else self.configs_now(store):
            seeds = out.setdefault(label(config), {})
            for cell in self.searched_cells(config):
                result = store.result(cell)
                if result is None or not result.scored:  # a collapsed cell counts with its validation score
                    continue
                value = (result.validation.get(cell.datasets.get("validation")) or {}).get(self.metric)
                if value is not None:
                    seeds[cell.seed] = float(value)
        return out

    def pending_search(self, store: RunStore) -> int:
        return sum(1 for c in self.search_cells(store) if not _settled(store.state(c)))

    def final_cells(self, store: RunStore) -> list[Cell]:
        """The selected configuration's cells for every seed (scoring validation and test), or [] while a
        search cell is unfinished or no configuration has a score."""
        config = self.chosen(store)
        if config is None:
            return []
        configs, start = self.configs_now(store), self.start_configs(store)
        scores = self.scores(store, configs)
        axis = self._extended_axis()
        edge = self._edge(configs, axis, store) if axis else None
        selection = {
            "metric": self.metric,
            "validation": self.cells[0].datasets.get("validation"),
            "searched": self.searched,
            "chosen": config,
            "rule": TIE_RULE,
            "search_seeds": self.search_seeds,
            "capped": self.capped,
            **({"centred_on": self._centred_on(store)} if self.centre else {}),
            **(
                {  # the winner still at an edge once the cap was reached: the best value may lie beyond it
                    "extend": self.extend,
                    "extended": [c for c in configs if c not in start],
                    "edge_at_cap": edge,
                }
                if self.extend
                else {}
            ),
            "configurations": [  # every configuration's validation scores, for the report
                {
                    "config": c,
                    "scores": {str(s): v for s, v in scores[label(c)].items()},
                    "mean": _mean(scores[label(c)]),
                }
                for c in configs
            ],
        }
        return [self._with(c, config, scoring="all", selection=selection) for c in self.cells]

    def _centred_on(self, store: RunStore) -> dict:
        axis, neighbour = self.centre
        return {"budget": neighbour.cells[0].budget, axis: self.centre_value(store), "start": self.start_configs(store)}

    def added_cells(self) -> int:
        """Cells the search adds to the grid: every configuration on the search seeds, less the selected
        configuration's search cells when they are reused (no ``search_train``)."""
        runs = len(self.configs) * len(self.search_seeds)
        return runs if self.capped else runs - len(self.search_seeds)


def _settled(state) -> bool:
    """Finished, or failed (retried only when asked): nothing more will come of it in this run."""
    return state.finished or state.retryable


def _beyond(values: list[float], edge: str) -> float:
    """The next value past ``edge`` of the sorted ``values``, at the ratio of the edge to its neighbour
    (3 significant digits: 1e-4 after 3e-5, 1e-4 gives 3.33e-4)."""
    if edge == "high":
        value = values[-1] * values[-1] / values[-2]
    else:
        value = values[0] * values[0] / values[1]
    return float(f"{value:.3g}")


def _mean(scores: dict) -> float | None:
    return sum(scores.values()) / len(scores) if scores else None


@dataclass
class Plan:
    fixed: list[Cell]  # cells outside any search (baselines; everything when the suite searches nothing)
    groups: list[Group]

    @property
    def searching(self) -> bool:
        return bool(self.groups)

    def first_phase(self, store: RunStore | None = None) -> list[Cell]:
        """The fixed cells and every search cell (with a store: the extensions its finished cells call for)."""
        return self.fixed + [c for g in self.groups for c in g.search_cells(store)]

    def final_phase(self, store: RunStore) -> list[Cell]:
        return [c for g in self.groups for c in g.final_cells(store)]

    def grid_cells(self) -> list[Cell]:
        """The grid's cells at the suite's settings (what k/n seeds count against)."""
        return self.fixed + [c for g in self.groups for c in g.cells]

    def added_cells(self) -> int:
        return sum(g.added_cells() for g in self.groups)


def headline(cell: Cell) -> str:
    """The metric the search selects on: the report's headline (nDCG@10) where the cell computes it."""
    names = list(cell.eval.get("metrics") or get_stage(cell.stage).metrics)
    return "ndcg@10" if "ndcg@10" in names else names[0]


def plan(suite, over=None) -> Plan:
    """The suite's cells, and per trained (stage, datasets, method, budget) its search when it has one."""
    cells = expand(suite, over)
    top = suite.top
    if not top.search:
        return Plan(cells, [])
    seeds = list(top.search_seeds or top.seeds[:1])
    fixed, grouped = [], {}
    for cell in cells:
        configs = configurations(top.search, cell.method) if cell.train is not None else [{}]
        if configs == [{}]:
            fixed.append(cell)
            continue
        key = (cell.stage, json.dumps(cell.datasets, sort_keys=True), cell.method, cell.budget)
        if key not in grouped:
            searched = {k: [c[k] for c in configs if k in c] for k in configs[0]}
            grouped[key] = Group(
                [], configs, seeds, dict(top.search_train), headline(cell), _unique(searched), dict(top.search_extend)
            )
        grouped[key].cells.append(cell)
    groups = _centred(list(grouped.values()), dict(top.search_centre), suite.where)
    for group in groups:
        for config in group.configs:  # a searched value the stage refuses: one error before anything runs
            try:
                group._with(group.cells[0], config, train=group.capped)
            except Exception as exc:  # noqa: BLE001  (pydantic's message, made one line)
                raise BenchError(f"suite {suite.where}: search {label(config)}: {str(exc).splitlines()[0]}") from None
    return Plan(fixed, groups)


def _centred(groups: list[Group], centre: dict, where: str) -> list[Group]:
    """Link each group at a budget other than the anchor to its method's group at the neighbouring budget
    toward the anchor (``search_centre``), and order the groups so that a neighbour comes first (one worker
    runs the groups in this order). Without ``search_centre``: the groups as they are."""
    if not centre:
        return groups
    from .config import methods_pct

    (axis, anchor), *more = centre.items()
    if more:
        raise BenchError(f"suite {where}: search_centre: give one setting (got {sorted(centre)})")
    by_key = {g.key: g for g in groups}
    steps = {}
    for group in groups:
        pct = methods_pct(group.cells[0].budget)
        if pct is None:  # one-size methods have one budget: nothing to centre on
            steps[id(group)] = 0
            continue
        stage, datasets, method, _ = group.key
        ladder = [(methods_pct(g.cells[0].budget), g) for g in groups if g.key[:3] == (stage, datasets, method)]
        ladder.sort(key=lambda item: item[0])  # on the percentage alone: two groups never compare
        pcts = [p for p, _ in ladder]
        if anchor not in pcts:
            steps[id(group)] = 0
            continue
        here, home = pcts.index(pct), pcts.index(anchor)
        steps[id(group)] = abs(here - home)
        if here != home:
            if not all(_positive(c.get(axis)) for c in group.configs):
                raise BenchError(f"suite {where}: search_centre.{axis}: its searched values must be positive numbers")
            neighbour = ladder[here + (1 if here < home else -1)][1]
            group.centre = (axis, by_key[neighbour.key])
    return sorted(groups, key=lambda g: steps[id(g)])


def _positive(value) -> bool:
    try:
        return float(value) > 0 and not isinstance(value, bool)
    except (TypeError, ValueError):
        return False


def _unique(searched: dict) -> dict:
    return {k: list(dict.fromkeys(v)) for k, v in searched.items()}
