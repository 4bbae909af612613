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


def test_throughput_is_timed_after_the_warm_up_and_not_over_evaluations():
    from types import SimpleNamespace

    from lmzoo.callbacks import ThroughputCallback

    now = [0.0]
    meter = ThroughputCallback(tokens_per_sample=128, flops_per_token=1e6, peak_flops=1e12, peak_source="test",
                               warmup_steps=5, clock=lambda: now[0])
    args = SimpleNamespace(train_batch_size=8, gradient_accumulation_steps=2, world_size=1)
    state = SimpleNamespace(global_step=0, max_steps=40)
    control = SimpleNamespace()
    meter.on_train_begin(args, state, control)
    logs = []
    for step in range(1, 41):
        now[0] += 30.0 if step <= 5 else 2.0  # warm-up steps (compilation) are 15x slower
        state.global_step = step
        meter.on_step_end(args, state, control)
        if step % 10 == 0:  # the Trainer logs, then evaluates
            logs.append({"loss": 1.0})
            meter.on_log(args, state, control, logs=logs[-1])
        if step == 20:
            now[0] += 500.0  # an evaluation
            meter.on_evaluate(args, state, control)
    meter.on_train_end(args, state, control)
    assert "train_tokens_per_second" not in logs[0] or logs[0]["train_tokens_per_second"] == 16 * 128 / 2.0
    assert all(entry["train_tokens_per_second"] == 16 * 128 / 2.0 for entry in logs[1:])
    summary = meter.summary()
    assert summary["tokens_per_second"] == 16 * 128 / 2.0  # 1,024 tokens/s: no warm-up, no evaluation in it
    assert summary["mfu"] == round(1024 * 1e6 / 1e12, 5)
    assert summary["timed_from_step"] == 5 and summary["timed_steps"] == 35


def test_a_short_run_is_timed_over_its_second_half():
    from types import SimpleNamespace

    from lmzoo.callbacks import ThroughputCallback

    now = [0.0]
    meter = ThroughputCallback(128, 1e6, None, "none", warmup_steps=10, clock=lambda: now[0])
    args = SimpleNamespace(train_batch_size=4, gradient_accumulation_steps=1, world_size=1)
    state = SimpleNamespace(global_step=0, max_steps=6)
    meter.on_train_begin(args, state, SimpleNamespace())
    for step in range(1, 7):
        now[0] += 1.0
        state.global_step = step
        meter.on_step_end(args, state, SimpleNamespace())
    meter.on_train_end(args, state, SimpleNamespace())
    assert meter.summary()["timed_from_step"] == 3 and meter.summary()["timed_steps"] == 3
