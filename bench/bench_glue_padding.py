#!/usr/bin/env python
"""How much dynamic padding and length-grouped batches save on SST-2, side by side in one run.

Runs run_glue.py three times on the same SST-2 training subset, same seed, same model:

    pad_to_max       every batch padded to --max_seq_length, random batches (the classic recipe)
    dynamic          each batch padded to its longest example, random batches
    dynamic_grouped  dynamic padding and batches of similar length (run_glue.py's default)

and prints, for each, training time, dev evaluation time, dev accuracy and peak memory (RSS of that run's
process), then the speed-up of dynamic_grouped over pad_to_max (target >= 3x) and the dev accuracy differences
(target: within 0.3 points). The default (1024 training examples, 1 epoch) takes a few minutes on 2 CPU cores;
--max_train_samples 0 trains on all 67,349.

    python bench/bench_glue_padding.py --glue_dir $LMZOO_DATA_DIR/glue [--max_train_samples 4096]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from lmzoo.errors import UsageError, require, run_main  # noqa: E402
from lmzoo.glue_tasks import GLUE_DIR_ENV  # noqa: E402
from lmzoo.records import atomic_write_json, read_json  # noqa: E402

CONFIGS = {
    "pad_to_max": ["--pad_to_max_length"],
    "dynamic": ["--no_group_by_length"],
    "dynamic_grouped": [],
}
BASELINE, FASTEST = "pad_to_max", "dynamic_grouped"


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glue_dir", help=f"GLUE folder (default ${GLUE_DIR_ENV}, else $LMZOO_DATA_DIR/glue)")
    parser.add_argument("--model_name_or_path", default="minilm", help="checkpoint folder or 'minilm'")
    parser.add_argument("--max_train_samples", type=int, default=1024, help="0: the whole training set")
    parser.add_argument("--max_eval_samples", type=int, default=0, help="0: the whole dev set (872)")
    parser.add_argument("--num_train_epochs", type=float, default=1.0)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--work_dir", help="where the runs write (default: a new temporary folder)")
    return parser.parse_args(argv)


def find_glue_dir(given: str | None) -> str:
    data_dir = os.environ.get("LMZOO_DATA_DIR")
    glue_dir = given or os.environ.get(GLUE_DIR_ENV) or (os.path.join(data_dir, "glue") if data_dir else None)
    require(glue_dir is not None, f"give --glue_dir, or set {GLUE_DIR_ENV} or LMZOO_DATA_DIR")
    require(os.path.isdir(os.path.join(glue_dir, "SST-2")), f"{glue_dir} has no SST-2 folder")
    return glue_dir


def run_glue_command(args, glue_dir: str, output_dir: str, extra: list[str]) -> list[str]:
    command = [
        sys.executable, os.path.join(REPO_ROOT, "run_glue.py"),
        "--model_name_or_path", args.model_name_or_path, "--task_name", "sst2", "--glue_dir", glue_dir,
        "--do_train", "--do_eval", "--output_dir", output_dir, "--overwrite_output_dir",
        "--per_device_train_batch_size", str(args.batch_size), "--per_device_eval_batch_size", str(args.batch_size),
        "--learning_rate", str(args.learning_rate), "--num_train_epochs", str(args.num_train_epochs),
        "--max_seq_length", str(args.max_seq_length), "--seed", str(args.seed),
        "--save_strategy", "no", "--no_save_model", "--disable_tqdm", "True", *extra,
    ]
    if args.max_train_samples:
        command += ["--max_train_samples", str(args.max_train_samples)]
    if args.max_eval_samples:
        command += ["--max_eval_samples", str(args.max_eval_samples)]
    return command


def run_one(command: list[str], output_dir: str) -> dict:
    """Run one configuration in its own process; its peak RSS comes from the kernel's account of that child."""
    os.makedirs(output_dir, exist_ok=True)
    log_path = os.path.join(output_dir, "run.log")
    started = time.time()
    with open(log_path, "w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise UsageError(f"run failed with status {child.returncode}; see {log_path}")
    results = read_json(os.path.join(output_dir, "all_results.json"))
    return {
        "train_s": results["train_runtime"],
        "eval_s": results["eval_runtime"],
        "dev_accuracy": results["eval_accuracy"],
        "train_loss": results["train_loss"],
        "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux reports kilobytes
        "process_wall_s": time.time() - started,
    }


def print_report(results: dict, args) -> None:
    print(f"\nSST-2, {args.model_name_or_path}, {args.max_train_samples or 'all'} training examples x "
          f"{args.num_train_epochs:g} epoch, batch {args.batch_size}, max_seq_length {args.max_seq_length}, "
          f"seed {args.seed}")
    print(f"{'config':<16}{'train s':>10}{'eval s':>10}{'dev acc':>10}{'peak RSS MB':>14}")
    for name, row in results.items():
        print(f"{name:<16}{row['train_s']:>10.1f}{row['eval_s']:>10.1f}{100 * row['dev_accuracy']:>10.2f}"
              f"{row['peak_rss_mb']:>14.0f}")
    if BASELINE not in results:
        return
    base = results[BASELINE]
    for name, row in results.items():
        if name == BASELINE:
            continue
        speedup = base["train_s"] / row["train_s"]
        difference = 100 * (row["dev_accuracy"] - base["dev_accuracy"])
        verdict = "" if name != FASTEST else (
            f"  [speed-up target >= 3x: {'met' if speedup >= 3 else 'NOT met'}; "
            f"accuracy target within 0.3: {'met' if abs(difference) <= 0.3 else 'NOT met'}]")
        print(f"{name} vs {BASELINE}: training {speedup:.2f}x faster, eval "
              f"{base['eval_s'] / row['eval_s']:.2f}x faster, dev accuracy {difference:+.2f} points{verdict}")


def main(argv=None):
    args = parse_arguments(argv)
    glue_dir = find_glue_dir(args.glue_dir)
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="bench-glue-padding-")
    results = {}
    for name in args.configs:
        output_dir = os.path.join(work_dir, name)
        print(f"running {name} ...", flush=True)
        results[name] = run_one(run_glue_command(args, glue_dir, output_dir, CONFIGS[name]), output_dir)
    atomic_write_json(os.path.join(work_dir, "bench_results.json"), {"settings": vars(args), "results": results})
    print_report(results, args)
    print(f"\nruns and bench_results.json in {work_dir}")


if __name__ == "__main__":
    run_main(main)()
