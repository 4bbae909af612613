"""The steps every pretraining script shares, each named for what it returns.

    run = start_run(training_args, data_args)              # output folder checked, caches placed, seed set
    config = build_config(model_args, run)                  # preset / config.json / checkpoint / model type
    raw = load_raw_corpus(data_args, run.hub_cache)         # (lmzoo.corpus)
    plan = plan_model(model_args, config, raw, run, block=block)   # (lmzoo.plan) tokenizer, vocabulary: final
    model = build_model(plan, AutoModelForX)                # (lmzoo.plan)
    trainer = LmTrainer(...callbacks=run.callbacks(model, ...))
    finish_run(trainer, run, plan, ...)                     # train, evaluate, save, record
"""

import logging
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field

import transformers
from transformers import set_seed

from .cache import default_cache_dir
from .checkpoints import check_model_folder
from .callbacks import DivergenceGuard, ThroughputCallback, TrainingTimeLimit
from .logs import quiet_library_logs
from .flops import device_peak_flops, flops_per_token, precision_of
from .errors import UsageError, require
from .presets import load_config, max_positions, preset_name
from .records import batch_fields_of, hardware
from .tokenizer import tokenizer_fingerprint
from .run_folder import exit_if_diverged, prepare_output_dir, train_and_save, write_results

logger = logging.getLogger("lmzoo")


# How each script's eval_loss / perplexity is computed (written into every record and the zoo's methods).
PERPLEXITY_KINDS = {
    "run_mlm.py": "exp of the mean cross-entropy over the masked tokens of every validation block (15% by default, "
                  "one fixed draw per block, the same at every evaluation)",
    "run_clm.py": "exp of the mean next-token cross-entropy over every validation block (fixed blocks of "
                  "--block_size tokens, each predicted without context from the previous block)",
    "run_t5_span.py": "exp of the mean cross-entropy over the target tokens (sentinels, hidden spans and EOS) of "
                      "every validation block (one fixed span draw per block)",
}


@dataclass
class Run:
    """What a pretraining run knows about itself beyond its arguments."""

    training_args: object
    cache_root: str
    resume_from: str | None
    require_cache: bool = False  # --require_cache: use the caches a --prepare_only run built, never build
    started: float = field(default_factory=time.time)
    throughput: ThroughputCallback | None = None
    guard: DivergenceGuard = field(default_factory=DivergenceGuard)
    time_limit: TrainingTimeLimit | None = None

    @property
    def hub_cache(self) -> str:
        return os.path.join(self.cache_root, "hub")

    def callbacks(self, model, tokens_per_sample: int, head_fraction: float = 1.0, target_length: int | None = None):
        """Throughput/MFU, the divergence guard and --max_train_minutes. tokens_per_sample: the input length;
        target_length: an encoder-decoder's decoder length; head_fraction: the share of tokens the output layer
        runs on."""
        precision = precision_of(self.training_args)
        peak, source = device_peak_flops(precision, self.cache_root)
        flops = flops_per_token(model, tokens_per_sample, head_fraction, target_length)
        self.throughput = ThroughputCallback(tokens_per_sample, flops, peak, source)
        minutes = getattr(self.training_args, "max_train_minutes", None)
        self.time_limit = TrainingTimeLimit(minutes) if minutes else None
        return [self.throughput, self.guard] + ([self.time_limit] if self.time_limit else [])


def start_run(training_args, data_args) -> Run:
    """Check everything cheap before any long work; put caches where the user said; seed."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO if training_args.should_log else logging.WARNING, stream=sys.stdout)
    transformers.utils.logging.set_verbosity(logging.WARNING)
    quiet_library_logs()
    resume_from = None
    if not data_args.prepare_only:  # preparing writes only to the caches: --output_dir is neither read nor held
        resume_from = prepare_output_dir(training_args)
        if training_args.overwrite_output_dir and training_args.do_train:
            remove_checkpoints(training_args.output_dir)  # a stale checkpoint-N would be "resumed" by the next run
    require(data_args.has_source() or not (training_args.do_train or data_args.prepare_only),
            "no training data: give --train_file (a local .txt/.jsonl/...), --dataset_dir, or --dataset_name "
            "(a Hub dataset, or `demo` for the embedded demo corpus)")
    require(not (data_args.streaming and training_args.do_train and training_args.max_steps <= 0),
            "--streaming reads the corpus as it trains, with no length to count epochs by: give --max_steps")
    require(not (data_args.streaming and data_args.line_by_line and training_args.world_size > 1),
            "--streaming --line_by_line gives batches of different lengths, which accelerate cannot dispatch to "
            "several processes: drop --line_by_line (packed blocks) or --streaming")
    cache_root = os.path.abspath(data_args.cache_dir or default_cache_dir())
    place_compile_cache(cache_root)
    set_seed(training_args.seed)
    if resume_from:
        logger.info("resuming from %s", resume_from)
        training_args.eval_on_start = False  # the untrained model was measured by the first run
    return Run(training_args, cache_root, resume_from, require_cache=data_args.require_cache)


def place_compile_cache(cache_root: str) -> None:
    """torch.compile's cache goes under --cache_dir, not the system temp folder, unless the user set
    TORCHINDUCTOR_CACHE_DIR (torch fills in its own default as soon as inductor is imported: that one we move)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir as torch_default

    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or os.path.abspath(current) == os.path.abspath(torch_default()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(cache_root, "torchinductor")


def remove_checkpoints(output_dir: str) -> None:
    for name in os.listdir(output_dir):
        path = os.path.join(output_dir, name)
        if name.startswith("checkpoint-") and os.path.isdir(path):
            shutil.rmtree(path)


def build_config(model_args, run: Run):
    if model_args.model_name_or_path:  # before any long work: a damaged checkpoint folder is one line
        check_model_folder(model_args.model_name_or_path, "--model_name_or_path")
    source = model_args.model_name_or_path if model_args.model_name_or_path and not model_args.config_name else None
    if source is not None and not os.path.isdir(source) and preset_name(source) is None:
        source = model_args.model_name_or_path  # a Hub checkpoint: its config comes from the Hub too
    return load_config(model_args.config_name or source, model_args.model_type,
                       model_args.config_overrides if not model_args.model_name_or_path else None, run.hub_cache)


def check_model_type(config, allowed: tuple, script: str) -> None:
    if config.model_type not in allowed:
        raise UsageError(f"{script} trains {', '.join(allowed)} models; the config is a '{config.model_type}'")


def block_length(requested: int | None, default: int, config, flag: str) -> int:
    """The block size: the user's, else `default` capped at the model's positions; never more than the positions."""
    limit = max_positions(config)
    if requested is None:
        return min(default, limit) if limit else default
    require(requested > 1, f"{flag} must be at least 2, got {requested}")
    if limit is not None and requested > limit:
        raise UsageError(f"{flag} {requested} is larger than the model's {limit} positions; "
                         f"use {flag} <= {limit} or a config with more positions")
    return requested


def describe_corpus(data_args) -> str:
    """The corpus as the zoo names it: `train-*.txt.xz (validation: validation.txt.xz, test: test.txt.xz)`."""
    if data_args.train_file:
        held_out = [f"{split}: {os.path.basename(path)}" for split, path in
                    (("validation", data_args.validation_file), ("test", data_args.test_file)) if path]
        return os.path.basename(data_args.train_file) + (f" ({', '.join(held_out)})" if held_out else "")
    if data_args.dataset_dir:
        return os.path.basename(os.path.normpath(data_args.dataset_dir))
    return " ".join(x for x in (data_args.dataset_name, data_args.dataset_config_name) if x)


def loss_curve(trainer, tokens_per_step: int) -> list[dict]:
    """Train and eval loss against steps and tokens seen, from the Trainer's log history (for the zoo's plots)."""
    curve = []
    for entry in trainer.state.log_history:
        point = {k: entry[k] for k in ("loss", "eval_loss") if k in entry}
        if point and "step" in entry:
            curve.append({"step": entry["step"], "tokens": entry["step"] * tokens_per_step, **point})
    return curve


def train_samples(dataset) -> int | None:
    """Training blocks stored (None for a stream, which has no length)."""
    if dataset is None:
        return 0
    return len(dataset) if hasattr(dataset, "__len__") else None


def tokenizing_workers(dataset) -> int | None:
    """How many processes tokenized the stored training blocks: each writes one Arrow file of the cache. It is
    recorded because a corpus of 20,000 documents or more is split among the workers before packing, so the blocks
    (and every number after them) depend on it; a rerun on other cores repeats them with --preprocessing_num_workers.
    None for a stream (packed in one reader, the same as one worker) and when nothing was trained."""
    files = getattr(dataset, "cache_files", None)
    return len(files) if files else None


def initial_eval_loss(trainer) -> float | None:
    """The untrained model's eval loss (from --eval_on_start), if it was measured in this run."""
    for entry in trainer.state.log_history:
        if entry.get("step") == 0 and "eval_loss" in entry:
            return entry["eval_loss"]
    return None


def finish_run(trainer, run: Run, plan, *, script: str, model_args, data_args, extra_record: dict | None = None,
               after_training=None, test_dataset=None) -> dict:
    """Train (resuming when a checkpoint is there), evaluate (validation, then `test_dataset` when given), save the
    model and tokenizer, write the records.

    `after_training(record)` may add to the record (on the main process, with the trained model) before it is
    written: strided perplexity, samples."""
    args = trainer.args
    metrics = {}
    status = "completed"
    if args.do_train:
        train_metrics, diverged = train_and_save(trainer, run.resume_from, run.guard)
        metrics.update(train_metrics)
        status = "diverged" if diverged else status
    if args.do_eval and status == "completed":
        eval_metrics = trainer.evaluate()
        metrics.update(eval_metrics)
        metrics["perplexity"] = eval_metrics["eval_perplexity"]
        if test_dataset is not None:
            metrics.update(trainer.evaluate(test_dataset, metric_key_prefix="test"))
    batch = batch_fields_of(args)
    tokens_per_step = batch["effective_batch_size"] * plan.block
    record = {
        "kind": "pretrain",
        "script": script,
        "command": shlex.join(["python", script, *sys.argv[1:]]),  # what reruns it, for the zoo
        "status": status,
        "model": os.path.basename(os.path.normpath(args.output_dir)),
        "output_dir": os.path.abspath(args.output_dir),
        "model_type": plan.config.model_type,
        "config_name": model_args.config_name or model_args.model_name_or_path or model_args.model_type,
        "config_overrides": model_args.config_overrides,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "embedding_rows": trainer.model.get_input_embeddings().num_embeddings,
        "vocab_size": len(plan.tokenizer),
        "vocab_size_requested": plan.vocab_size_requested,
        "tokenizer": plan.tokenizer_source,
        "tokenizer_fingerprint": tokenizer_fingerprint(plan.tokenizer),  # two runs, the same vocabulary?
        "corpus": describe_corpus(data_args),
        "block_size": plan.block,
        "packing": "line by line" if data_args.line_by_line else data_args.packing,
        "train_samples": train_samples(trainer.train_dataset),
        "tokenizing_workers": tokenizing_workers(trainer.train_dataset),
        "streaming": data_args.streaming,
        "shuffle_buffer": data_args.shuffle_buffer if data_args.streaming else None,
        "steps": trainer.state.global_step,
        **batch,
        "learning_rate": args.learning_rate,
        "tokens_seen": trainer.state.global_step * tokens_per_step,
        "precision": precision_of(args),
        "gpu_defaults": getattr(args, "gpu_defaults_applied", {}),
        "seed": args.seed,
        "wall_time_s": round(time.time() - run.started, 1),
        "eval_loss": metrics.get("eval_loss"),
        "perplexity": metrics.get("perplexity"),
        "eval_accuracy": metrics.get("eval_accuracy"),
        "eval_tokens": metrics.get("eval_tokens"),
        "eval_examples": metrics.get("eval_examples"),
        "perplexity_kind": PERPLEXITY_KINDS[script],
        **{f"test_{name}": metrics.get(f"test_{name}") for name in ("loss", "perplexity", "accuracy", "tokens",
                                                                     "examples") if test_dataset is not None},
        "initial_eval_loss": initial_eval_loss(trainer),
        "throughput": run.throughput.summary() if run.throughput else None,
        "loss_curve": loss_curve(trainer, tokens_per_step),
        "hardware": hardware(),
        **(extra_record or {}),
    }
    if run.guard.diverged_at_step is not None:
        record["diverged_at_step"] = run.guard.diverged_at_step
    if run.time_limit is not None:
        record["time_limit"] = {"minutes": args.max_train_minutes, "stopped_at_step": run.time_limit.stopped_at_step,
                                "planned_steps": trainer.state.max_steps}
    if trainer.is_world_process_zero():
        if after_training is not None and status == "completed":
            after_training(record)
            if "strided" in record:
                metrics.update({k: v for k, v in record["strided"].items() if isinstance(v, (int, float))})
        write_results(trainer, args.output_dir, metrics, record)
        print_summary(record, metrics, args.output_dir)
    end_distributed()
    exit_if_diverged(status == "diverged")
    return record


def end_distributed() -> None:
    """Close the process group (torch warns about leaked resources otherwise)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def print_summary(record: dict, metrics: dict, output_dir: str) -> None:
    lines = [f"[lmzoo] {record['script']} {record['status']}: {record['steps']} steps, "
             f"{record['tokens_seen']:,} tokens, {record['wall_time_s']} s"]
    limit = record.get("time_limit") or {}
    if limit.get("stopped_at_step") is not None:
        lines.append(f"[lmzoo] stopped by --max_train_minutes {limit['minutes']:g} at step {limit['stopped_at_step']} "
                     f"of {limit['planned_steps']} (the learning rate had not finished its decay)")
    if record.get("eval_loss") is not None:
        lines.append(f"[lmzoo] eval_loss {record['eval_loss']:.4f}  perplexity {record['perplexity']:.2f}  "
                     f"accuracy {record['eval_accuracy']:.4f}  (over {record['eval_tokens']:,} tokens of "
                     f"{record['eval_examples']:,} validation blocks)")
    if record.get("test_loss") is not None:
        lines.append(f"[lmzoo] test_loss {record['test_loss']:.4f}  test perplexity {record['test_perplexity']:.2f}  "
                     f"(over {record['test_tokens']:,} tokens of {record['test_examples']:,} test blocks)")
    throughput = record.get("throughput") or {}
    if throughput.get("tokens_per_second"):
        mfu = f"  MFU {throughput['mfu']:.2%}" if throughput.get("mfu") else ""
        lines.append(f"[lmzoo] {throughput['tokens_per_second']:,.0f} tokens/s{mfu}")
    if record.get("strided"):
        lines.append(f"[lmzoo] strided perplexity {record['strided']['strided_perplexity']:.2f} "
                     f"(window {record['strided']['strided_window']}, stride {record['strided']['strided_stride']})")
    for sample in record.get("samples", []):
        lines.append(f"[lmzoo] sample: {sample['prompt']!r} -> {sample['continuation']!r}")
    if record["status"] == "completed":
        lines.append(f"[lmzoo] checkpoint and tokenizer: {os.path.abspath(output_dir)}")
    else:
        from .checkpoints import latest_complete_checkpoint

        kept = latest_complete_checkpoint(output_dir, warn=False)
        lines.append(f"[lmzoo] nothing saved from the diverged weights; last good checkpoint: {kept or 'none'}")
    print("\n".join(lines), flush=True)
