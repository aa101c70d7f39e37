"""One process, several precisions: perf's ablations and a worker running cells of different precisions."""

import pytest

from bench.train import make_accelerator


def test_a_second_precision_in_one_process_gets_its_own_accelerator_state():
    pytest.importorskip("accelerate")
    assert make_accelerator("bf16").mixed_precision == "bf16"
    assert make_accelerator("no").mixed_precision == "no"
    assert make_accelerator("no").mixed_precision == "no"
    assert make_accelerator("bf16").mixed_precision == "bf16"
