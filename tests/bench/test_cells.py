"""Cell identity: ids hash only what differs from each setting's id_default; stores written before id
version 2 map onto today's cells; the shipped suites' ids and every id_default are pinned."""

import argparse
import gzip
import json

import pytest
import yaml

import methods
from bench.cells import Cell, expand
from bench.config import Overrides, list_suites, load_suite, resolve
from bench.settings import FirstStageSettings, setting
from bench.stages import all_stages, get_stage
from conftest import GOLDEN


def test_id_defaults_are_pinned():
    """An id_default is the behaviour before its field existed: editing one would re-key old stores."""
    pinned = json.loads((GOLDEN / "id_defaults.json").read_text())
    now = {"first_stage": FirstStageSettings.id_defaults()}
    for stage in all_stages():
        if stage.name in pinned:
            now[stage.name] = {"train": stage.Train.id_defaults(), "eval": stage.Eval.id_defaults()}
            if stage.Section:
                now[stage.name][stage.section_key] = stage.Section.id_defaults()
    assert json.loads(json.dumps(now)) == pinned


def test_shipped_suites_keep_their_ids():
    pinned = json.loads((GOLDEN / "cell_ids_v2.json").read_text())
    assert set(pinned) <= set(list_suites())
    for name, cells in pinned.items():
        assert [[c.stage, c.method, c.budget, c.seed, c.id] for c in expand(load_suite(name))] == cells, name


def as_before(cell: Cell) -> Cell:
    """The cell with what changed since id version 2 began set back (the rerank head on the first token,
    dense training without the false-negative mask, the method's first revision)."""
    train = cell.train
    if train is not None:
        train = {
            **train,
            **({"head": "cls"} if "head" in train else {}),
            **({"mask_false_negatives": False} if "mask_false_negatives" in train else {}),
        }
    return cell.replace(train=train, revision=1)


def without_validation(cell: Cell) -> Cell:
    """The cell as it was before the search (issue 23): trained on the whole training split, no validation."""
    from bench.data import parse_holdout

    datasets = dict(cell.datasets)
    if datasets.pop("validation", None) is None:
        return cell
    holdout = parse_holdout(datasets["train"])
    if holdout is not None:
        datasets["train"] = holdout[0]
    return cell.replace(datasets=datasets)


def test_every_cell_written_before_id_version_2_maps_onto_todays_cell():
    """All 860 cells of the shipped suites x stages as the code before the change wrote them (precision
    auto resolved to bf16 then): Cell.from_v1 gives the id of today's cell with the same precision and
    the behaviour of then; today's defaults re-key exactly the cells whose training changed since (and the
    trained cells of the suites that gained validation data for the search)."""
    golden = json.load(gzip.open(GOLDEN / "cells_v1.json.gz", "rt"))
    checked = rekeyed = 0
    for suite, stages in golden.items():
        for stage, v1_cells in stages.items():
            parsed, over = resolve(argparse.Namespace(suite=suite, stage=stage))
            if stage == "qlm" and load_suite(suite).top.stage != ["qlm"]:
                over = Overrides(model="smollm2")  # as the v1 cells were made: an LM for the qlm stage
            today = {}
            for cell in expand(parsed, over):
                resolved = cell.replace(mixed_precision="bf16") if cell.mixed_precision == "auto" else cell
                before = without_validation(resolved)
                key = (cell.method, cell.budget, cell.seed, json.dumps(before.datasets, sort_keys=True))
                today[key] = (as_before(before).id, resolved.id, before is not resolved)
            assert len(today) == len(v1_cells), (suite, stage)
            for v1 in v1_cells:
                key = (v1["method"], v1["budget"], v1["seed"], json.dumps(v1["datasets"], sort_keys=True))
                then, now, searched = today[key]
                assert Cell.from_v1(v1).id == then, (suite, stage, key)
                changed = searched or (  # a holdout or validation split: a new experiment (issue 23)
                    v1.get("train") is not None
                    and (stage in ("rerank", "dense") or methods.get_method(v1["method"]).revision > 1)
                )
                assert (now != then) == changed, (suite, stage, key)
                checked, rekeyed = checked + 1, rekeyed + changed
    assert checked == 860 and 0 < rekeyed < 860


def test_a_new_setting_at_its_id_default_changes_no_id(monkeypatch):
    stage = get_stage("rerank")
    before = [c.id for c in expand(load_suite("scifact"))]

    class WithNewKnob(stage.Train):
        label_smoothing: float = setting(0.0)  # a setting added later, its default = the old behaviour

    monkeypatch.setattr(type(stage), "Train", WithNewKnob)
    cells = expand(load_suite("scifact"))
    assert all("label_smoothing" in c.train for c in cells if c.train is not None)
    assert [c.id for c in cells] == before
    changed = cells[3].replace(train={**cells[3].train, "label_smoothing": 0.1})
    assert changed.id != cells[3].id  # a value other than the id_default is part of the identity


def test_suite_name_is_not_identity_and_core_fields_are():
    cell = expand(load_suite("smoke"))[3]
    assert cell.replace(suite="other").id == cell.id
    for change in ({"seed": 99}, {"model": "mpnet-base"}, {"budget": "6.7"}, {"mixed_precision": "bf16"}):
        assert cell.replace(**change).id != cell.id, change


def test_json_round_trip():
    for cell in expand(load_suite("smoke-dense"))[:3]:
        data = json.loads(json.dumps(cell.to_json()))
        assert data["id_version"] == 2 and data["cell_id"] == cell.id
        assert Cell.from_json(data) == cell


@pytest.mark.parametrize("suite", ["smoke", "smoke-qlm", "scifact-dense"])
def test_overrides_are_part_of_the_grid_not_of_the_suite(suite):
    parsed = load_suite(suite)
    plain = expand(parsed)
    overridden = expand(parsed, Overrides(train={"epochs": 2}))
    trained = [(a, b) for a, b in zip(plain, overridden) if a.train is not None]
    assert trained and all(b.train["epochs"] == 2 and a.id != b.id for a, b in trained if a.train["epochs"] != 2)


def test_a_methods_options_change_only_its_own_cells_ids(tmp_path):
    """A named option off the authors' default (suite ``options:``) is part of its cells' identity; no
    other cell moves, and a suite with no options (or ``options: {}``) keeps every id."""
    base = {
        "name": "o",
        "stage": "qlm",
        "model": "tiny-llama",
        "methods": ["zero-shot", "lora", "qpeft-r", "qpeft-a"],
        "seeds": [1],
        "datasets": [{"train": "toy/train", "eval": ["toy/test"]}],
    }
    ids = {}
    for name, options in (
        ("plain", None),
        ("empty", {}),
        ("changed", {"qpeft-r": {"mlp": "residual", "short": "mask"}, "qpeft-a": {"attention_dropout": 0.0}}),
    ):
        suite = {**base, **({"options": options} if options is not None else {})}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(suite))
        ids[name] = {c.method: c.id for c in expand(load_suite(str(path)))}
    assert ids["plain"] == ids["empty"]
    moved = {m for m in ids["plain"] if ids["plain"][m] != ids["changed"][m]}
    assert moved == {"qpeft-r", "qpeft-a"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**base, "options": {"qpeft-r": {"mpl": "residual"}}}))
    with pytest.raises(Exception, match="options.qpeft-r.mpl: not an option of qpeft-r"):
        load_suite(str(bad))
