"""The grid runner survives kill -9, records failing and diverging cells, and resumes."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from helpers.cli import bench
from helpers.data import write_toy_suite


@pytest.fixture
def grid(tmp_path):
    return write_toy_suite(
        tmp_path,
        "grid",
        methods="bm25,lora,full,bitfit",
        seeds=[1, 2, 3],
        train={"steps": 15, "batch_queries": 2, "group_size": 3, "max_length": 32},
    )


def results(out):
    return {p.parent.name: p for p in (out / "grid").glob("*/result.json")}


def assert_same_metrics(out_a, out_b, cells=4):
    a, b = results(out_a), results(out_b)
    assert set(a) == set(b) and len(a) == cells
    for cell in a:
        metrics_a = json.loads(a[cell].read_text())["metrics"]["toy/test"]
        assert metrics_a == pytest.approx(json.loads(b[cell].read_text())["metrics"]["toy/test"], abs=1e-6)


def test_kill_9_at_random_moments_then_resume(grid, tmp_path):
    out, env = tmp_path / "runs", {**os.environ, "HF_HUB_OFFLINE": "1", "BENCH_DATA_PATH": str(tmp_path / "data")}
    rng = random.Random(0)
    finished: dict = {}
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.cli", "run", "--suite", str(grid), "--out", str(out)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        before, deadline = len(results(out)), time.time() + 300
        while len(results(out)) == before and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)  # progress first, then a kill at a random moment of the next cells
        time.sleep(rng.uniform(0.0, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for path in (out / "grid").rglob("*.json"):
            if not path.name.startswith("."):
                json.loads(path.read_text())  # never half written
        for cell, path in results(out).items():
            finished.setdefault(cell, path.read_bytes())
    done = bench("run", "--suite", str(grid), "--out", str(out), env_path=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-2000:]
    final = results(out)
    assert len(final) == 10  # bm25 + lora x 3 seeds + full x 3 + bitfit x 3
    assert all(json.loads(p.read_text())["status"] == "done" for p in final.values())
    assert len(finished) >= 4
    for cell, content in finished.items():
        assert final[cell].read_bytes() == content, f"finished cell {cell} was rewritten"
    assert not list((out / "grid").rglob("*.tmp")) and not list(out.rglob("heartbeat.json"))
    assert not list(out.rglob("claim.json"))  # the killed runs' claims: taken over, then released


def test_failing_and_diverging_cells_are_recorded_and_retried(grid, tmp_path):
    out = tmp_path / "runs"
    os.environ["BENCH_FAULTS"] = "lora=raise,full=nan"
    try:
        first = bench("run", "--suite", str(grid), "--out", str(out), "--seeds", "1", env_path=tmp_path / "data")
    finally:
        del os.environ["BENCH_FAULTS"]
    assert first.returncode == 1
    assert "failed: rerank lora" in first.stderr and "diverged: rerank full" in first.stderr
    statuses = {json.loads(p.read_text())["method"]: json.loads(p.read_text())["status"] for p in results(out).values()}
    assert statuses == {"bm25": "done", "lora": "failed", "full": "diverged", "bitfit": "done"}
    full = next(
        json.loads(p.read_text()) for p in results(out).values() if json.loads(p.read_text())["method"] == "full"
    )
    assert "non-finite loss" in full["error"]

    status = bench("status", "--suite", str(grid), "--out", str(out), "--seeds", "1", env_path=tmp_path / "data")
    assert status.returncode == 0
    assert "2 done" in status.stdout and "1 failed" in status.stdout and "1 diverged" in status.stdout
    assert "failed: rerank lora" in status.stdout and "fault forced" in status.stdout

    plain = bench("run", "--suite", str(grid), "--out", str(out), "--seeds", "1", env_path=tmp_path / "data")
    assert plain.returncode == 1  # failed cells are kept until asked
    retried = bench(
        "run", "--suite", str(grid), "--out", str(out), "--seeds", "1", "--retry-failed", env_path=tmp_path / "data"
    )
    assert retried.returncode == 0, retried.stderr[-2000:]
    assert all(json.loads(p.read_text())["status"] == "done" for p in results(out).values())


def test_local_workers_give_the_serial_numbers(grid, tmp_path):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    assert (
        bench("run", "--suite", str(grid), "--out", str(serial), "--seeds", "1", env_path=tmp_path / "data").returncode
        == 0
    )
    done = bench(
        "run",
        "--suite",
        str(grid),
        "--out",
        str(parallel),
        "--seeds",
        "1",
        "--workers",
        "2",
        env_path=tmp_path / "data",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_metrics(serial, parallel)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_cluster_runs_the_grid_like_the_local_launcher(grid, tmp_path):
    pytest.importorskip("ray")
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.run(
        [
            ray_cli,
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert head.returncode == 0, head.stderr[-2000:]
    try:
        ray_out, local_out = tmp_path / "ray", tmp_path / "local"
        done = bench(
            "run",
            "--suite",
            str(grid),
            "--out",
            str(ray_out),
            "--seeds",
            "1",
            "--launcher",
            "ray",
            "--ray-address",
            f"127.0.0.1:{port}",
            env_path=tmp_path / "data",
        )
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, env=env, timeout=120)
    assert (
        bench(
            "run", "--suite", str(grid), "--out", str(local_out), "--seeds", "1", env_path=tmp_path / "data"
        ).returncode
        == 0
    )
    assert_same_metrics(ray_out, local_out)


def test_submitit_local_executor_runs_the_grid(grid, tmp_path):
    pytest.importorskip("submitit")
    out = tmp_path / "slurm"
    done = bench(
        "run",
        "--suite",
        str(grid),
        "--out",
        str(out),
        "--seeds",
        "1",
        "--launcher",
        "slurm",
        "--slurm-cluster",
        "local",
        env_path=tmp_path / "data",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert all(json.loads(p.read_text())["status"] == "done" for p in results(out).values())
    assert len(results(out)) == 4
