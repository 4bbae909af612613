import json

import torch

from lmzoo.flops import cpu_peak_flops


def write_cache(folder, value):
    key = f"fp32-{torch.get_num_threads()}threads"
    (folder / "cpu_peak_flops.json").write_text(json.dumps({key: value}))
    return key


def test_a_peak_probed_on_a_busy_machine_is_replaced_by_a_better_one(tmp_path):
    key = write_cache(tmp_path, 1.0)  # as if measured while other jobs had the cores
    peak = cpu_peak_flops("fp32", str(tmp_path))
    assert peak > 1e8  # any CPU multiplies 1024 x 1024 matrices at over 0.1 GFLOP/s
    assert json.loads((tmp_path / "cpu_peak_flops.json").read_text())[key] == peak


def test_the_best_rate_seen_is_kept(tmp_path):
    key = write_cache(tmp_path, 1e18)
    assert cpu_peak_flops("fp32", str(tmp_path)) == 1e18
    assert json.loads((tmp_path / "cpu_peak_flops.json").read_text())[key] == 1e18
