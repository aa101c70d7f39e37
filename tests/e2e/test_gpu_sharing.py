"""The GPU duties that can be checked on a CPU: no foreign framework may claim a device (a stand-in jax
fails when asked for a non-CPU platform), workers sharing a card get their share of its memory, and a cell
that runs out of memory on a shared card runs again with the card to itself before it counts as failed.
The CUDA calls are faked where they must be."""

import json
import os
import subprocess
import sys

import pytest

from helpers.cli import bench
from helpers.data import write_toy_suite

STAND_IN = """
import os
PLATFORM = os.environ.get("JAX_PLATFORMS", "")
if PLATFORM != "cpu":  # the real jax would initialise CUDA here and preallocate most of the card
    raise AssertionError(f"stand-in jax: asked to initialise platform {PLATFORM or 'default (gpu)'!r}")
"""
LAX = """
import os
import numpy as np

def top_k(scores, k):
    with open(os.environ["JAX_STAND_IN_LOG"], "a") as log:
        log.write(os.environ.get("JAX_PLATFORMS", "") + "\\n")
    order = np.argsort(-np.asarray(scores))[:k]
    return np.asarray(scores)[order], order
"""


@pytest.fixture
def stand_in_jax(tmp_path):
    package = tmp_path / "standin" / "jax"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(STAND_IN + "from . import lax, numpy\n")
    (package / "lax.py").write_text(LAX)
    (package / "numpy.py").write_text("from numpy import *  # noqa\n")
    return tmp_path / "standin"


def test_bm25s_never_gets_jax_onto_a_device(stand_in_jax, tmp_path):
    log = tmp_path / "jax.log"
    env = {
        **os.environ,
        "PYTHONPATH": f"{stand_in_jax}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "JAX_PLATFORMS": "cuda",
        "JAX_STAND_IN_LOG": str(log),
    }
    direct = subprocess.run([sys.executable, "-c", "import bm25s"], capture_output=True, text=True, env=env)
    assert direct.returncode != 0 and "asked to initialise platform 'cuda'" in direct.stderr  # the stand-in bites
    suite = write_toy_suite(tmp_path, "jx", methods="bm25,lora")
    done = bench(
        "run",
        "--suite",
        suite,
        "--out",
        tmp_path / "runs",
        "--workers",
        "2",
        env_path=tmp_path / "data",
        env={k: env[k] for k in ("PYTHONPATH", "JAX_PLATFORMS", "JAX_STAND_IN_LOG")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    calls = log.read_text().split()
    assert calls and set(calls) == {"cpu"}  # every process pinned JAX to the CPU
    assert all(json.loads(p.read_text())["status"] == "done" for p in (tmp_path / "runs").rglob("result.json"))


def test_search_asks_bm25s_for_numpy(stand_in_jax, tmp_path, monkeypatch):
    """Retrieval never goes through jax's top-k: only bm25s's own import-time call reaches the stand-in."""
    log = tmp_path / "jax.log"
    code = (
        "import bench, bm25s, os; from bench.data import load_collection; from bench.firststage import bm25s_search;"
        f"c = load_collection('{tmp_path / 'data' / 'toy'}/test'); bm25s_search(c, 3, 0.9, 0.4)"
    )
    write_toy_suite(tmp_path, "x")
    env = {**os.environ, "PYTHONPATH": f"{stand_in_jax}{os.pathsep}{os.getcwd()}", "JAX_STAND_IN_LOG": str(log)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert log.read_text().split() == ["cpu"]


def test_workers_sharing_a_card_each_get_a_share(monkeypatch):
    import torch

    from bench import environment, launchers

    monkeypatch.setattr(launchers, "_gpu_count", lambda: 2)
    shares = [launchers._worker_env(slot, 4, 1)[launchers.SHARE_ENV] for slot in range(4)]
    cards = [launchers._worker_env(slot, 4, 1)["CUDA_VISIBLE_DEVICES"] for slot in range(4)]
    assert shares == ["0.500000"] * 4 and cards == ["0", "1", "0", "1"]
    assert launchers._worker_env(0, 4, 1, alone=True)[launchers.SHARE_ENV] == "1.0"
    monkeypatch.setattr(launchers, "_gpu_count", lambda: 1)
    assert launchers._worker_env(0, 3, 1)[launchers.SHARE_ENV] == "0.333333"
    claimed = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, *a: claimed.append(f))
    monkeypatch.setenv(launchers.SHARE_ENV, "0.333333")
    environment.claim_gpu_share()
    assert claimed == [pytest.approx(1 / 3, rel=1e-5)]


@pytest.mark.parametrize("fault, status", [("oom", "done"), ("oom-always", "failed")])
def test_out_of_memory_on_a_shared_card_runs_again_alone(fault, status, tmp_path, monkeypatch):
    from bench import launchers
    from bench.cells import expand
    from bench.config import load_suite

    monkeypatch.setattr(launchers, "_gpu_count", lambda: 1)  # two workers, one (fake) card: a share each
    monkeypatch.setenv("BENCH_DATA_PATH", str(tmp_path / "data"))
    monkeypatch.setenv("BENCH_FAULTS", f"lora={fault}")
    suite = write_toy_suite(tmp_path, "oom", methods="bm25,lora,bitfit")
    cells = expand(load_suite(str(suite)))
    finished = []
    launchers.launch(cells, tmp_path / "runs", "local", workers=2, on_done=finished.append)
    assert sorted(c.method for c in finished) == ["bitfit", "bm25", "lora"]  # each reported once
    results = {
        json.loads(p.read_text())["method"]: json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("result.json")
    }
    lora = results["lora"]
    assert lora["status"] == status
    assert lora["attempts"][0]["gpu_share"] == pytest.approx(0.5)
    assert "out of memory on a shared card (share 0.5)" in lora["attempts"][0]["error"]
    if status == "failed":
        assert lora["error"].startswith("out of memory with the card to itself")
    assert results["bitfit"]["status"] == "done" and "attempts" not in results["bitfit"]
