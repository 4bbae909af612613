"""What each model-zoo row cost, as tables: budgets (steps, tokens, examples, grid, seeds), run time, hardware,
and the command lines that rerun the rows, from the records' own settings."""

import os
import shlex

from .zoo_grid import DASH, GLUE_TABLE_TASKS, GridCell, format_lr, format_number, is_usable, model_label


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def describe_values(values, formatter=format_number) -> str:
    """A set of settings in braces, sorted: {16, 32}."""
    present = sorted(v for v in values if v is not None)
    return "{" + ", ".join(formatter(v) for v in present) + "}" if present else DASH


def describe_cap(records: list[dict], key: str) -> str:
    """'all', 'first 2000', or per task when the tasks differ (sst2: first 2000; others: all)."""
    def cap(value):
        return "all" if value is None else f"first {value}"

    by_task = {}
    for record in records:
        if key in record:  # a run that failed before recording its settings says nothing about them
            by_task.setdefault(cap(record[key]), set()).add(record["task"])
    if len(by_task) <= 1:
        return next(iter(by_task), DASH)
    return "; ".join(f"{', '.join(sorted(tasks))}: {value}" for value, tasks in sorted(by_task.items()))


def describe_train_examples(records: list[dict]) -> str:
    """The cap, and the tasks whose whole training set is smaller: 'first 2000 (wnli: all 635)'."""
    smaller = {r["task"]: r["train_examples"] for r in records
               if r.get("max_train_samples") and 0 < (r.get("train_examples") or 0) < r["max_train_samples"]}
    note = ", ".join(f"{task}: all {count}" for task, count in sorted(smaller.items()))
    return describe_cap(records, "max_train_samples") + (f" ({note})" if note else "")


def describe_hardware(records: list[dict]) -> str:
    names = set()
    for record in records:
        info = record.get("hardware") or {}
        if info.get("device") == "cuda":
            names.add(f"1x {info.get('device_name', 'GPU')}")
        elif info:
            names.add(f"CPU ({info.get('cpu_count')} cores)")
    return ", ".join(sorted(names)) or DASH


def describe_duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{max(minutes, 1)} min"


def tasks_by_seeds(runs: list[dict]) -> list[tuple[frozenset, list[str]]]:
    """The tasks grouped by the set of seeds they were run over, the largest group first (in table order)."""
    seeds = {}
    for record in runs:
        if record.get("seed") is not None:
            seeds.setdefault(record["task"], set()).add(record["seed"])
    groups = {}
    for task in GLUE_TABLE_TASKS:
        if task in seeds:
            groups.setdefault(frozenset(seeds[task]), []).append(task)
    return sorted(groups.items(), key=lambda group: (-len(group[1]), sorted(group[0])))


def describe_seeds(runs: list[dict]) -> str:
    """'{42}', or with tasks run over other seeds than most: '{42, 43, 44} (sst2: {42})'."""
    groups = tasks_by_seeds(runs)
    if not groups:
        return DASH
    others = "; ".join(f"{', '.join(tasks)}: {describe_values(seeds)}" for seeds, tasks in groups[1:])
    return describe_values(groups[0][0]) + (f" ({others})" if others else "")


def describe_grid(runs: list[dict]) -> str:
    """'{8, 16} x {1e-4, 3e-4} x {4}': batch size x learning rate x epochs, as tried."""
    return " x ".join((describe_values({r["effective_batch_size"] for r in runs}),
                       describe_values({float(r["learning_rate"]) for r in runs}, format_lr),
                       describe_values({float(r["num_train_epochs"]) for r in runs})))


def different_grids_note(models: list[str], cells: dict[tuple, GridCell]) -> str | None:
    """When the rows were tuned over different grids or training sets, one sentence saying which, so that the
    table beside it is not read as a ranking; None when they share one."""
    by_setting = {}
    for model in models:
        runs = [r for c in cells.values() if c.model == model for r in c.runs]
        setting = f"{describe_grid(runs)}, training examples: {describe_train_examples(runs)}"
        by_setting.setdefault(setting, []).append(model)
    if len(by_setting) < 2:
        return None
    groups = "; ".join(f"{' and '.join(names)}: {setting}" for setting, names in by_setting.items())
    return (f"The rows were tuned over different grids (batch size x learning rate x epochs; {groups}), so a gap "
            "between them may come from the grid rather than the model.")


def glue_budget_table(models: list[str], cells: dict[tuple, GridCell]) -> str:
    header = ["Model", "tasks", "grid: batch size x learning rate x epochs", "seeds", "train examples",
              "dev examples", "runs", "total run time", "hardware"]
    rows = []
    for model in models:
        runs = [r for c in cells.values() if c.model == model for r in c.runs]
        completed = sum(is_usable(r) for r in runs)
        rows.append([
            model,
            ", ".join(t for t in GLUE_TABLE_TASKS if any(r["task"] == t for r in runs)),
            describe_grid(runs),
            describe_seeds(runs),
            describe_train_examples(runs),
            describe_cap(runs, "max_eval_samples"),
            f"{completed} completed, {len(runs) - completed} failed or diverged",
            describe_duration(sum(run_seconds(r) for r in runs)),
            describe_hardware(runs),
        ])
    return markdown_table(header, rows)


def run_seconds(record: dict) -> float:
    """The run's wall time as its sweep measured it (start-up included), else as the run measured itself."""
    return (record.get("sweep") or {}).get("seconds") or record.get("wall_time_s") or 0


def sweep_command(runs: list[dict]) -> str | None:
    """The sweep_glue.sh line that reruns a row, from the settings its records say they were run with."""
    swept = [r["sweep"] for r in runs if (r.get("sweep") or {}).get("request")]
    if not swept:
        return None
    request = swept[-1]["request"]
    model = model_label(request["model"]) if os.path.isabs(request["model"]) else request["model"]
    grid = {"TASKS": [t for t in GLUE_TABLE_TASKS if any(r["task"] == t for r in runs)],
            "BATCH_SIZES": [str(b) for b in sorted({r["per_device_train_batch_size"] for r in runs})],
            "LEARNING_RATES": [format_lr(x) for x in sorted({float(r["learning_rate"]) for r in runs})],
            "EPOCHS": [format_number(x) for x in sorted({float(r["num_train_epochs"]) for r in runs})],
            "SEEDS": [str(s) for s in sorted({r.get("seed") for r in runs if r.get("seed") is not None})],
            "MAX_TRAIN_SAMPLES": [str(request["max_train_samples"])] if request.get("max_train_samples") else [],
            "GLUE_DIR": [swept[-1]["glue_dir"]] if swept[-1].get("glue_dir") else [],
            "MODEL_NAME": [request["name"]] if request.get("name") not in (None, model) else []}
    variables = [f"{name}={shlex.quote(' '.join(values))}" for name, values in grid.items() if values]
    extra = ["--", *request["extra_args"]] if request.get("extra_args") else []
    return " ".join([*variables, shlex.join(["bash", "sweep_glue.sh", model, *extra])])


def sweep_commands(models: list[str], cells: dict[tuple, GridCell]) -> str:
    """A line per row; a row whose tasks were run over different seeds gets one sweep per set of seeds (a sweep
    runs every task over every seed it is given)."""
    lines = []
    for model in models:
        runs = [r for c in cells.values() if c.model == model for r in c.runs]
        groups = [tasks for _, tasks in tasks_by_seeds(runs)] or [None]
        commands = [sweep_command([r for r in runs if tasks is None or r["task"] in tasks]) for tasks in groups]
        commands = [f"`{command}`" for command in commands if command]
        if commands:
            lines.append(f"- {model}: " + " and ".join(commands))
    return "\n".join(lines)


def pretrain_budget_table(runs: list[dict]) -> str:
    header = ["Model", "corpus", "steps", "tokens seen", "batch x block", "learning rate", "precision", "run time",
              "hardware"]
    rows = [[r["model"], r.get("corpus", DASH), f"{r.get('steps', 0):,}", f"{r.get('tokens_seen', 0):,}",
             f"{r.get('effective_batch_size')} x {r.get('block_size')}", format_lr(r.get("learning_rate") or 0),
             r.get("precision", DASH), describe_duration(r.get("wall_time_s") or 0), describe_hardware([r])]
            for r in runs]
    return markdown_table(header, rows)


def rerun_command(run: dict) -> str:
    """The command a pretraining run recorded, with the number of tokenizing workers pinned when it used several:
    they split the corpus before packing, so on other cores the same flags would cut other blocks."""
    command, workers = run["command"], run.get("tokenizing_workers")
    if workers and workers > 1 and "--preprocessing_num_workers" not in command:
        command += f" --preprocessing_num_workers {workers}"
    return command


def pretrain_commands(runs: list[dict]) -> str | None:
    """The command line of each pretraining row, as its run recorded it (tokenizing workers pinned)."""
    lines = [f"- {r['model']}: `{rerun_command(r)}`" for r in runs if r.get("command")]
    return "\n".join(lines) or None
