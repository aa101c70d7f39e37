"""Golden fixtures made with the code before the architecture change (issue 14, step 0)."""
import json, sys, shutil, subprocess, os
from pathlib import Path
from unittest import mock

sys.path.insert(0, "/work/main/tests")
from bench import environment, suites

golden = Path("/work/main/tests/golden")
# cell ids of every shipped suite x stage (auto precision pinned to bf16: machine-independent)
ids = {}
with mock.patch.object(environment, "resolve_precision", lambda v: "bf16" if v == "auto" else str(v)):
    import argparse
    for name in suites.list_suites():
        suite = suites.load_suite(name)
        for stage in suites.STAGES:
            s = suites.apply_overrides(suite, argparse.Namespace(stage=stage))
            if stage == "qlm" and suite.get("stage") != "qlm" and "model" not in (suite.get("qlm") or {}):
                s["qlm"] = {**(s.get("qlm") or {}), "model": "smollm2"}
            try:
                cells = suites.expand(s)
            except Exception as exc:
                continue
            ids.setdefault(name, {})[stage] = cells
import gzip
with gzip.open(golden / "cells_v1.json.gz", "wt") as f:
    json.dump(ids, f, sort_keys=True)
print(sum(len(v) for s in ids.values() for v in s.values()), "ids")
