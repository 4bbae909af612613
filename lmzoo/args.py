"""Command-line arguments shared by every script: dataclasses, parsing, and checks of flag combinations.

The flags are the Hugging Face examples' flags (users type them from memory). `LmzooTrainingArguments` is
transformers' `TrainingArguments` plus what transformers 5 dropped or what lmzoo adds: `--overwrite_output_dir`,
`--mixed_precision auto` (bf16 on CUDA where supported, else fp16, without being asked), and saner defaults
for long runs (keep two checkpoints, log every 50 steps).
"""

import dataclasses
import enum
import json
import os
import sys
import types as types_
import typing
from dataclasses import asdict, dataclass, field

import torch
from transformers import HfArgumentParser, TrainingArguments

from .errors import UsageError, require


@dataclass
class LmzooTrainingArguments(TrainingArguments):
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start afresh in a non-empty --output_dir instead of refusing (a checkpoint there is resumed otherwise)."},
    )
    mixed_precision: str = field(
        default="auto",
        metadata={
            "help": "auto: bf16 on CUDA GPUs that support it, else fp16; fp32 on CPU unless --bf16 is given. "
            "'no' keeps fp32 everywhere.",
            "choices": ["auto", "no"],
        },
    )
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept in --output_dir (the newest)."})
    logging_steps: float = field(default=50, metadata={"help": "Log the training loss every X steps."})
    logging_nan_inf_filter: bool = field(default=False, metadata={
        "help": "Hide NaN/inf losses from the logs (off: lmzoo stops a diverged run instead of hiding it)."})

    def __post_init__(self):
        cuda = torch.cuda.is_available() and not self.use_cpu
        if self.fp16 and self.bf16:
            raise UsageError("--fp16 and --bf16 are contradictory: choose one mixed precision")
        if self.fp16 and not cuda:
            raise UsageError("--fp16 needs a CUDA GPU and none is in use; on CPU use --bf16 or fp32 (no flag)")
        if not cuda and not _has_other_accelerator():
            # Say so explicitly: transformers refuses --bf16 otherwise, and under torchrun only use_cpu makes
            # accelerate set up multi-CPU DDP (without it each process would train alone, unsynchronised).
            self.use_cpu = True
        if not cuda:
            self.dataloader_pin_memory = False  # nothing to pin to; avoids a warning per dataloader
        self.auto_precision = None  # what --mixed_precision auto chose, if anything
        if self.mixed_precision == "auto" and cuda and not (self.fp16 or self.bf16):
            self.auto_precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            setattr(self, self.auto_precision, True)
        for flag in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            value = getattr(self, flag)
            if value is not None and value < 1:
                raise UsageError(f"--{flag} must be a positive integer, got {value}")
        if self.learning_rate <= 0:
            raise UsageError(f"--learning_rate must be > 0, got {self.learning_rate}")
        if self.max_steps == 0 or (self.max_steps < 0 and self.num_train_epochs <= 0):
            raise UsageError(
                f"nothing to train: --max_steps {self.max_steps} with --num_train_epochs {self.num_train_epochs}; "
                "give --max_steps > 0 or --num_train_epochs > 0"
            )
        super().__post_init__()
        check_integrations(self)


# --report_to names -> (transformers' check that the package is there, the package to install)
REPORTERS = {"tensorboard": ("is_tensorboard_available", "tensorboard"), "wandb": ("is_wandb_available", "wandb"),
             "mlflow": ("is_mlflow_available", "mlflow"), "comet_ml": ("is_comet_available", "comet_ml"),
             "clearml": ("is_clearml_available", "clearml"), "neptune": ("is_neptune_available", "neptune"),
             "dvclive": ("is_dvclive_available", "dvclive"), "codecarbon": ("is_codecarbon_available", "codecarbon"),
             "swanlab": ("is_swanlab_available", "swanlab"), "trackio": ("is_trackio_available", "trackio")}


def check_integrations(args) -> None:
    """What would otherwise fail after the model is built: a --report_to package that is not installed, and
    --push_to_hub while the Hub is offline."""
    import transformers.integrations as integrations
    from huggingface_hub import constants

    for name in args.report_to or []:
        check, package = REPORTERS.get(name, (None, None))
        if check and hasattr(integrations, check) and not getattr(integrations, check)():
            raise UsageError(f"--report_to {name} needs the {package} package, which is not installed "
                             f"(pip install {package}, or --report_to none)")
    require(not (args.push_to_hub and constants.HF_HUB_OFFLINE),
            "--push_to_hub needs the Hugging Face Hub, which is offline (HF_HUB_OFFLINE); leave the flag out and "
            "upload the folder later")


@dataclass
class PretrainingArguments(LmzooTrainingArguments):
    """Training arguments of the pretraining scripts: from-scratch defaults instead of fine-tuning ones."""

    learning_rate: float = field(default=5e-4, metadata={
        "help": "Peak AdamW learning rate (pretraining from scratch wants more than fine-tuning's 5e-5)."})
    warmup_steps: float = field(default=0.01, metadata={
        "help": "Linear warm-up: a number of steps, or a fraction of the run when below 1."})
    eval_on_start: bool = field(default=True, metadata={
        "help": "Evaluate the untrained model first (with --do_eval), so the record shows how far training got."})
    max_train_minutes: float | None = field(default=None, metadata={
        "help": "Stop training after this many minutes (from the start of training in this process), then evaluate, "
                "save and record as usual, instead of being killed with nothing saved: for a machine lent for a fixed "
                "time or a job with a wall-time limit. The learning-rate schedule still follows --max_steps, so "
                "size --max_steps to fit and keep this as the safety net; the record says where it stopped."})
    gpu_defaults: bool = field(default=True, metadata={
        "help": "On a CUDA GPU: TF32, torch.compile, fused AdamW, persistent pinned data-loader workers, each unless "
                "its own flag is given (lmzoo.gpu_defaults); False keeps the plain Trainer settings."})

    def __post_init__(self):
        from .gpu_defaults import apply_gpu_defaults, explicit_flags

        require(self.max_train_minutes is None or self.max_train_minutes > 0,
                f"--max_train_minutes must be more than 0, got {self.max_train_minutes}")
        self.gpu_defaults_applied = {}
        if self.gpu_defaults and torch.cuda.is_available() and not self.use_cpu:
            self.gpu_defaults_applied = apply_gpu_defaults(self, explicit_flags.get())
        super().__post_init__()
        if not self.do_eval:
            self.eval_on_start = False


def _has_other_accelerator() -> bool:
    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return bool((mps and mps.is_available()) or (xpu and xpu.is_available()))


def parse_args(*dataclass_types, argv=None):
    """Parse the command line (or a single .json/.yaml file) into the given dataclasses.

    Errors raised by the dataclasses' own checks become one-line UsageErrors.
    """
    from .gpu_defaults import explicit_flags, flags_given

    parser = HfArgumentParser(dataclass_types)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0].endswith(ARGUMENT_FILE_SUFFIXES):
            require(len(argv) == 1, f"give either an arguments file or command-line flags, not both: {argv[0]} "
                                    f"and {' '.join(argv[1:3])}{' ...' if len(argv) > 3 else ''} (put every "
                                    "setting in the file, or every one on the command line)")
            values = read_arguments_file(argv[0], dataclass_types)
            explicit_flags.set(frozenset(values))
            return parser.parse_dict(values)
        explicit_flags.set(flags_given(argv))  # the GPU defaults give way to a flag the user typed
        return parser.parse_args_into_dataclasses(args=merge_repeated_list_flags(argv, dataclass_types))
    except UsageError:
        raise
    except ValueError as err:
        where = f"arguments file {argv[0]}: " if argv and argv[0].endswith(ARGUMENT_FILE_SUFFIXES) else ""
        raise UsageError(where + " ".join(str(err).split())) from err


ARGUMENT_FILE_SUFFIXES = (".json", ".yaml", ".yml")


def read_arguments_file(path: str, dataclass_types) -> dict:
    """The flags of a .json/.yaml arguments file, each value checked against the type of its field."""
    import yaml

    require(os.path.isfile(path), f"arguments file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f) if path.endswith(".json") else yaml.safe_load(f)
    except (ValueError, yaml.YAMLError) as err:
        kind = "JSON" if path.endswith(".json") else "YAML"
        raise UsageError(f"arguments file {path} is not valid {kind}: {' '.join(str(err).split())}") from err
    require(isinstance(values, dict), f"arguments file {path}: expected flag names with their values, found "
                                      f"a {type(values).__name__}")
    types = {}
    for cls in dataclass_types:
        hints = typing.get_type_hints(cls)
        types.update({f.name: hints.get(f.name) for f in dataclasses.fields(cls) if f.init})
    for name, value in values.items():
        expected = _expected_type(types.get(name))
        if expected is not None and not _has_type(value, expected):
            names = " or ".join(sorted({"a number" if t is float else _TYPE_WORDS.get(t, t.__name__) for t in expected}))
            raise UsageError(f"arguments file {path}: '{name}' is {value!r}, expected {names}")
    return values


_TYPE_WORDS = {bool: "true/false", int: "an integer", str: "a string", list: "a list", type(None): "null"}


def _expected_type(annotation) -> tuple | None:
    """The plain types a field accepts (None: too rich to check here, the parser and the field's checks will)."""
    if annotation is None:
        return None
    options = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types_.UnionType) \
        else (annotation,)
    plain = []
    for option in options:
        origin = typing.get_origin(option) or option
        if origin in (bool, int, float, str, list, type(None)):
            plain.append(origin)
        elif isinstance(origin, type) and issubclass(origin, enum.Enum):
            plain.append(str)  # given by name
        else:
            return None
    return tuple(plain)


def _has_type(value, expected: tuple) -> bool:
    if isinstance(value, bool):
        return bool in expected
    if isinstance(value, int) and (int in expected or float in expected):
        return True
    return any(isinstance(value, t) for t in expected if t not in (bool, int))


def merge_repeated_list_flags(argv: list[str], dataclass_types) -> list[str]:
    """`--sample_prompt A --sample_prompt B` means both: join repeats of list-valued flags into one
    (argparse's nargs="+" would keep only the last)."""
    list_flags = {f"--{f.name}" for cls in dataclass_types for f in dataclasses.fields(cls)
                  if str(f.type).startswith(("list", "typing.List"))}
    values, order, rest, current = {}, [], [], None
    for arg in argv:
        if arg.startswith("--"):
            current = arg if arg in list_flags else None
            if current is None:
                rest.append(arg)
            elif current not in values:
                values[current] = []
                order.append(current)
        elif current is not None:
            values[current].append(arg)
        else:
            rest.append(arg)
    merged = list(rest)
    for flag in order:
        merged += [flag, *values[flag]]
    return merged


@dataclass
class ModelArguments:
    """Which model to train and with which tokenizer (shared by the pretraining scripts)."""

    model_name_or_path: str | None = field(default=None, metadata={
        "help": "A checkpoint to continue from (a folder, or a Hub name when online). Leave out to train from scratch."})
    config_name: str | None = field(default=None, metadata={
        "help": "A preset (bert-tiny, bert-mini, ..., gpt2, t5-small; or the Hub names people type for them, e.g. "
                "prajjwal1/bert-tiny), a config.json, a checkpoint folder, or a Hub name."})
    model_type: str | None = field(default=None, metadata={
        "help": "Train from scratch with the library's default config of this type (e.g. bert)."})
    config_overrides: str | None = field(default=None, metadata={
        "help": "Override config fields when training from scratch: \"num_hidden_layers=2,hidden_size=64\"."})
    tokenizer_name: str | None = field(default=None, metadata={
        "help": "A tokenizer folder or Hub name. Leave out to use the checkpoint's or to train one on the corpus."})
    vocab_size: int | None = field(default=None, metadata={
        "help": "Size of the tokenizer trained on the corpus (default: the preset's vocabulary size)."})
    pad_vocab_to_multiple_of: int | None = field(default=None, metadata={
        "help": "Round a from-scratch model's embedding table up to a multiple of this, for faster matmuls (default: "
                "64 on a CUDA GPU, GPT-2's 50,257 -> 50,304 rows; 1 on CPU). The extra rows are never a target and "
                "generation never emits them."})

    def __post_init__(self):
        value = self.pad_vocab_to_multiple_of
        require(value is None or value >= 1, f"--pad_vocab_to_multiple_of must be a positive integer, got {value}")


@dataclass
class DataArguments:
    dataset_name: str | None = field(default=None, metadata={
        "help": "A Hub dataset (e.g. wikitext, JeanKaddour/minipile, wikipedia), or `demo` for the embedded demo corpus."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration."})
    dataset_dir: str | None = field(default=None, metadata={
        "help": "A local dataset folder: save_to_disk output, a datasets cache of .arrow shards, or text/jsonl/parquet files."})
    train_file: str | None = field(default=None, metadata={
        "help": "Training text (.txt, .jsonl, .csv, .tsv, .parquet; may be .gz/.bz2/.xz compressed), or a quoted glob "
                "such as 'books/train-*.txt.xz' (the matching files in name order)."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation text, same formats (or a glob)."})
    test_file: str | None = field(default=None, metadata={
        "help": "Held-out test text, same formats (or a glob): with --do_eval, also evaluated after validation and "
                "recorded as test_loss / test_perplexity."})
    text_column: str = field(default="text", metadata={"help": "Column holding the text in json/csv/parquet data."})
    validation_split_percentage: int = field(default=5, metadata={
        "help": "Percent of the training documents held out for validation when there is no validation split."})
    max_seq_length: int | None = field(default=None, metadata={"help": "Tokens per block (the model's input length)."})
    line_by_line: bool = field(default=False, metadata={"help": "One example per non-empty line instead of packed blocks."})
    packing: str = field(default="blocks", metadata={
        "help": "blocks: concatenate and cut (attention crosses document boundaries, as the HF examples); "
                "documents: the same blocks, but attention stays inside each document.",
        "choices": ["blocks", "documents"]})
    tokenized_dir: str | None = field(default=None, metadata={
        "help": "Where the tokenized blocks are saved and reused (default: a folder under --cache_dir keyed by inputs)."})
    preprocessing_num_workers: int | None = field(default=None, metadata={
        "help": "Processes for tokenization (default: every core this process may use, for corpora of 20,000 "
                "documents or more; one below). Each packs its own share of the documents, so the count decides "
                "the blocks; the record keeps it."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training blocks."})
    max_eval_samples: int | None = field(default=None, metadata={
        "help": "Keep only the first N validation blocks (and test blocks, with --test_file)."})
    cache_dir: str | None = field(default=None, metadata={
        "help": "Root for lmzoo's caches (tokenized data, trained tokenizers, compile cache, Hub downloads); "
                "default $LMZOO_CACHE_DIR or ~/.cache/lmzoo."})
    prepare_only: bool = field(default=False, metadata={
        "help": "Build the tokenizer and the tokenized cache, then stop (no model, no --output_dir): run it once, "
                "then train with the same flags on every node."})
    require_cache: bool = field(default=False, metadata={
        "help": "Use the tokenizer and tokenized cache a --prepare_only run built, read-only; stop with one line if "
                "they are missing instead of building them (multi-node jobs)."})
    streaming: bool = field(default=False, metadata={
        "help": "Read the training split as it trains: tokenized and packed on the fly, never stored, resumed exactly "
                "from a checkpoint (needs --max_steps). Local .txt/.jsonl/.parquet files (or compressed), or a Hub "
                "dataset. Held-out splits are still tokenized once and cached."})
    shuffle_buffer: int = field(default=10_000, metadata={
        "help": "With --streaming: blocks shuffled in a buffer of this many (0: in corpus order)."})

    def __post_init__(self):
        require(self.shuffle_buffer >= 0, f"--shuffle_buffer must be 0 or more, got {self.shuffle_buffer}")
        require(not (self.streaming and self.max_train_samples),
                "--max_train_samples trims a stored training split; with --streaming, bound the run with --max_steps")
        for flag in ("max_train_samples", "max_eval_samples", "max_seq_length", "preprocessing_num_workers"):
            value = getattr(self, flag)
            # --max_eval_samples 0 would "evaluate" nothing and publish loss 0 / perplexity 1
            require(value is None or value > 0, f"--{flag} must be a positive integer, got {value}")
        require(not (self.prepare_only and self.require_cache),
                "--prepare_only builds the caches that --require_cache refuses to build: give one of them")

    def has_source(self) -> bool:
        return bool(self.dataset_name or self.dataset_dir or self.train_file)


@dataclass
class DistillationArguments:
    teacher_name_or_path: str | None = field(default=None, metadata={
        "help": "A masked-LM checkpoint to distil from (e.g. a run_mlm.py output folder). Turns run_mlm.py into "
                "DistilBERT-style distillation; the student is the model given by --config_name & co."})
    alpha_ce: float = field(default=5.0, metadata={"help": "Weight of the soft-target KL loss (distillation)."})
    alpha_mlm: float = field(default=2.0, metadata={"help": "Weight of the student's own masked-LM loss."})
    alpha_cos: float = field(default=1.0, metadata={
        "help": "Weight of the cosine loss between the last hidden states (only when the sizes match)."})
    temperature: float = field(default=2.0, metadata={"help": "Softmax temperature of the soft targets."})
    init_student_from_teacher: bool = field(default=False, metadata={
        "help": "Start the student from the teacher's embeddings, layers 0, 2, 4, ... and MLM head."})

    def __post_init__(self):
        require(self.temperature > 0, f"--temperature must be > 0, got {self.temperature}")
        for name in ("alpha_ce", "alpha_mlm", "alpha_cos"):
            require(getattr(self, name) >= 0, f"--{name} must be >= 0, got {getattr(self, name)}")
        require(self.alpha_ce + self.alpha_mlm + self.alpha_cos > 0,
                "--alpha_ce, --alpha_mlm and --alpha_cos are all 0: nothing to learn from")
        require(self.teacher_name_or_path or not self.init_student_from_teacher,
                "--init_student_from_teacher needs --teacher_name_or_path")

    def record(self) -> dict:
        """What the results record says about the distillation."""
        values = asdict(self)
        values["teacher"] = values.pop("teacher_name_or_path")
        if os.path.isdir(values["teacher"]):
            values["teacher"] = os.path.abspath(values["teacher"])
        return values
