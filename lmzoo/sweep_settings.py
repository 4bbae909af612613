"""The sweep's settings: flags, else environment variables, else the zoo's grid; and the checks of everything
that is the user's to fix (the model, the grid values, the tasks and their files) before the first run.

No torch or transformers import: a bad setting is one line at once. The sweep itself: lmzoo.sweep.
"""

import argparse
import os
import shlex
import sys
from dataclasses import dataclass

from . import glue_tasks
from .errors import UsageError, require
from .model_source import ALIASES, resolve_checkpoint
from .zoo_grid import file_safe, model_label

DEFAULT_OUTPUT_ROOT = "outputs"  # under the folder the sweep runs from, as the scripts' --output_dir examples
GLUE_MODULE = "run_glue"  # installed with the package (setup.py py_modules): run by module, wherever lmzoo lives
DEFAULT_GRID = {"tasks": "cola sst2 mrpc qqp stsb mnli qnli rte wnli", "batch_sizes": "8 16 32 64 128",
                "learning_rates": "1e-4 3e-4 3e-5 5e-5", "epochs": "4", "seeds": "42"}


# ----------------------------------------------------------------------------------------------------------------
# Settings: flags, else environment variables, else the zoo's grid


@dataclass(frozen=True)
class Settings:
    model: str  # what run_glue.py gets as --model_name_or_path
    name: str  # the model's name in folders and tables
    tasks: tuple
    batch_sizes: tuple
    learning_rates: tuple
    epochs: tuple
    seeds: tuple
    max_train_samples: int | None
    glue_dir: str | None
    glue_dir_given: str | None  # as the user named it, for the line that reruns the sweep
    output_root: str
    keep_checkpoints: bool
    runner: tuple  # the training command, before its arguments
    extra_args: tuple
    dry_run: bool = False
    cpu_jobs: int = 1  # runs side by side on a CPU-only machine, each with its share of the cores

    @property
    def model_root(self) -> str:
        return os.path.join(self.output_root, "glue", file_safe(self.name))

    def request(self) -> dict:
        """The settings that change a run's result beyond its grid point; stored in each record, compared on resume."""
        return {"name": self.name, "model": self.model, "max_train_samples": self.max_train_samples,
                "extra_args": list(self.extra_args)}

    def data(self) -> dict:
        """Where the GLUE data came from, as the user named it (not compared on resume: the same data may move)."""
        return {"glue_dir": self.glue_dir_given}


def split_list(text: str) -> list[str]:
    return text.replace(",", " ").split()


def parse_numbers(text: str, name: str, kind, positive: bool = True) -> tuple:
    values = []
    for item in split_list(text):
        try:
            value = kind(item)
        except ValueError:
            raise UsageError(f"{name}: '{item}' is not {'an integer' if kind is int else 'a number'}") from None
        require(value > 0 if positive else value >= 0, f"{name}: {item} must be {'> 0' if positive else '>= 0'}")
        values.append(value)
    require(bool(values), f"{name} is empty")
    return tuple(dict.fromkeys(values))


def parse_tasks(text: str) -> tuple:
    names = split_list(text)
    require(bool(names), "TASKS is empty")
    tasks = []
    for name in names:
        try:
            tasks.append(glue_tasks.get_task(name).name)
        except UsageError:
            raise UsageError(f"TASKS: unknown task '{name}'; valid tasks: {', '.join(glue_tasks.TASKS)}") from None
    return tuple(dict.fromkeys(tasks))


def parse_max_samples(text: str | None) -> int | None:
    if text in (None, ""):
        return None
    return parse_numbers(text, "MAX_TRAIN_SAMPLES", int)[0]


def is_true(text: str | None) -> bool:
    return (text or "").strip().lower() in ("1", "true", "yes", "on")


def default_glue_dir() -> str | None:
    """$LMZOO_GLUE_DIR (run_glue.py's default), else the shared data folder's glue/, else none (the Hub)."""
    if os.environ.get(glue_tasks.GLUE_DIR_ENV):
        return os.environ[glue_tasks.GLUE_DIR_ENV]
    data_dir = os.environ.get("LMZOO_DATA_DIR")
    if data_dir and os.path.isdir(os.path.join(data_dir, "glue")):
        return os.path.join(data_dir, "glue")
    return None


def resolve_model(name: str, output_root: str) -> tuple[str, str]:
    """(what run_glue.py gets, the model's label): a folder, a name under an output root, `minilm`, a Hub name."""
    roots = tuple(dict.fromkeys((output_root, os.path.abspath(DEFAULT_OUTPUT_ROOT))))
    try:
        resolved = resolve_checkpoint(name, "MODEL", roots)
    except UsageError as err:
        if "config.json" in str(err) or "package" in str(err):
            raise
        from huggingface_hub import constants

        known = ", ".join(["minilm", *known_models(output_root)])
        hub = "the Hub is offline" if constants.HF_HUB_OFFLINE else "not a Hub name either"
        raise UsageError(f"MODEL {name}: no such checkpoint folder, no model of that name under OUTPUT_ROOT "
                         f"({output_root}) or ./outputs, and {hub}; known names: {known}; or give "
                         "the path of a checkpoint folder (one holding config.json) as MODEL") from None
    if os.path.isdir(resolved) and name not in ALIASES:
        return os.path.abspath(resolved), model_label(os.path.abspath(resolved))
    return name, model_label(name)


def known_models(output_root: str) -> list[str]:
    """The checkpoint folders directly under the output roots, by name."""
    names = set()
    for root in dict.fromkeys((output_root, os.path.abspath(DEFAULT_OUTPUT_ROOT))):
        if os.path.isdir(root):
            names.update(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, "config.json")))
    return sorted(names)


def environment_default(name: str, fallback: str | None = None) -> str | None:
    """The variable's value when it is set, even to "" (TASKS="" is an empty list, not "all tasks")."""
    value = os.environ.get(name)
    return value if value is not None else fallback


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweep_glue.sh", description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s MODEL [flags] [-- extra run_glue.py arguments]")
    parser.add_argument("model", metavar="MODEL", help="Checkpoint folder, name under OUTPUT_ROOT, minilm, Hub name.")
    env = environment_default
    parser.add_argument("--name", default=env("MODEL_NAME"),
                        help="The model's name in folders and tables (env MODEL_NAME; default: the folder's name or "
                             "MODEL as given). Give budgets of one model different names.")
    parser.add_argument("--tasks", default=env("TASKS", DEFAULT_GRID["tasks"]), help="GLUE tasks (env TASKS).")
    parser.add_argument("--batch_sizes", default=env("BATCH_SIZES", DEFAULT_GRID["batch_sizes"]),
                        help="Per-device train batch sizes (env BATCH_SIZES).")
    parser.add_argument("--learning_rates", default=env("LEARNING_RATES", DEFAULT_GRID["learning_rates"]),
                        help="Peak learning rates (env LEARNING_RATES).")
    parser.add_argument("--epochs", default=env("EPOCHS", DEFAULT_GRID["epochs"]), help="Epoch counts (env EPOCHS).")
    parser.add_argument("--seeds", default=env("SEEDS", DEFAULT_GRID["seeds"]), help="Seeds (env SEEDS).")
    parser.add_argument("--max_train_samples", default=env("MAX_TRAIN_SAMPLES"),
                        help="Train on the first N examples of each task (env MAX_TRAIN_SAMPLES; default: all).")
    parser.add_argument("--glue_dir", default=env("GLUE_DIR"),
                        help="GLUE folder (<DIR>/RTE/train.tsv, ...; env GLUE_DIR; default $LMZOO_GLUE_DIR, "
                             "else $LMZOO_DATA_DIR/glue, else the Hub).")
    parser.add_argument("--output_root", default=env("OUTPUT_ROOT"),
                        help="Where everything goes (env OUTPUT_ROOT; default: the project's outputs/).")
    parser.add_argument("--keep_checkpoints", action="store_true", default=is_true(env("KEEP_CHECKPOINTS")),
                        help="Keep each run's weights and checkpoints (env KEEP_CHECKPOINTS=1).")
    parser.add_argument("--runner", default=env("SWEEP_RUNNER"),
                        help="The training command the grid arguments are appended to (env SWEEP_RUNNER; default: "
                             "this Python with run_glue.py). Tests substitute a stand-in.")
    parser.add_argument("--cpu_jobs", default=env("CPU_JOBS", "1"),
                        help="On a machine without GPUs, runs side by side, each with cores / N threads (env "
                             "CPU_JOBS; default 1).")
    parser.add_argument("--dry_run", action="store_true", help="Print the plan and exit.")
    return parser


def split_extra_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Our arguments, and those after `--` for run_glue.py."""
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1:]
    return argv, []


def parse_settings(argv: list[str], description: str | None = None) -> Settings:
    """The settings of `sweep_glue.sh MODEL [flags] [-- run_glue.py args]`; `description` is --help's text."""
    own, extra = split_extra_args(argv)
    args = build_parser(description).parse_args(own)
    output_root = os.path.abspath(args.output_root or DEFAULT_OUTPUT_ROOT)
    glue_dir = args.glue_dir or default_glue_dir()
    require(glue_dir is None or os.path.isdir(glue_dir), f"GLUE_DIR {glue_dir} is not a folder")
    batch_sizes = parse_numbers(args.batch_sizes, "BATCH_SIZES", int)
    learning_rates = parse_numbers(args.learning_rates, "LEARNING_RATES", float)
    epochs = parse_numbers(args.epochs, "EPOCHS", float)
    seeds = parse_numbers(args.seeds, "SEEDS", int, positive=False)
    max_train_samples = parse_max_samples(args.max_train_samples)
    tasks = parse_tasks(args.tasks)
    default_runner = (sys.executable, "-m", GLUE_MODULE)
    runner = tuple(shlex.split(args.runner)) if args.runner else default_runner
    model, label = resolve_model(args.model, output_root)
    if glue_dir is None:
        check_hub_reachable()
    (cpu_jobs,) = parse_numbers(args.cpu_jobs, "CPU_JOBS", int)
    return Settings(model, args.name or label, tasks, batch_sizes, learning_rates, epochs, seeds, max_train_samples,
                    os.path.abspath(glue_dir) if glue_dir else None, glue_dir, output_root, args.keep_checkpoints,
                    runner, tuple(extra), args.dry_run, cpu_jobs)


def check_hub_reachable() -> None:
    """Without a GLUE folder every run would read the Hub's GLUE: refuse at once when the Hub is offline."""
    from huggingface_hub import constants

    require(not constants.HF_HUB_OFFLINE,
            "no GLUE data: GLUE_DIR (or --glue_dir, $LMZOO_GLUE_DIR, $LMZOO_DATA_DIR/glue) names no folder and the "
            "Hugging Face Hub is offline (HF_HUB_OFFLINE); set GLUE_DIR to a folder in the GLUE layout "
            "(<DIR>/RTE/train.tsv, ...)")


def check_task_data(settings: Settings, tasks) -> None:
    """Read and check every train and dev file of the tasks about to run, once: a bad file is the user's to fix,
    and would otherwise fail every grid point of its task the same way."""
    if settings.glue_dir is None:
        return  # the Hub's GLUE: run_glue.py reads it
    from . import glue_data as glue

    for task in dict.fromkeys(tasks):
        glue.load_glue_data(glue_tasks.TASKS[task], glue_dir=settings.glue_dir, train=True, dev=True, test=False)
