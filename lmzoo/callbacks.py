"""Trainer callbacks: throughput and MFU in the logs, and a guard against a diverged loss.

MFU = achieved model FLOP/s over the device's peak. Model FLOPs per trained token are 6 x (parameters that
take part in every token's matmuls) plus the attention score and value products, 12 x layers x width x context
(halved for causal attention, whose masked half fused kernels skip), counting only what is computed: with the
sparse MLM head the vocabulary projection runs on the masked fraction of tokens only. Peaks: a table for
A100/H100/H200 by precision; on a CPU the best rate a matmul probe has shown, re-probed each run and cached.
"""

import json
import math
import os
import time

import torch
from transformers import TrainerCallback

# Dense peak FLOP/s (no sparsity) from the vendors' data sheets, SXM parts.
GPU_PEAK_FLOPS = {
    "A100": {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
    "H100": {"bf16": 989e12, "fp16": 989e12, "tf32": 494e12, "fp32": 67e12},
    "H200": {"bf16": 989e12, "fp16": 989e12, "tf32": 494e12, "fp32": 67e12},
}


def model_dimensions(config) -> tuple[int, int]:
    """(layers counted for attention, width) across the families lmzoo trains."""
    layers = sum(getattr(config, k, 0) or 0 for k in ("num_hidden_layers", "n_layer", "n_layers"))
    if config.model_type == "t5":
        layers = config.num_layers + (config.num_decoder_layers or config.num_layers)
    width = next(getattr(config, k) for k in ("hidden_size", "n_embd", "dim", "d_model") if hasattr(config, k))
    return layers, width


def flops_per_token(model, context: int, causal: bool, head_fraction: float = 1.0) -> float:
    """Training FLOPs (forward + backward) per token; see the module docstring."""
    embeddings = model.get_input_embeddings()
    head = model.get_output_embeddings()
    n_total = sum(p.numel() for p in model.parameters())
    n_embed = sum(p.numel() for p in embeddings.parameters()) if embeddings is not None else 0
    # Position tables are look-ups too, not matmuls.
    n_embed += sum(p.numel() for name, p in model.named_parameters() if "position_embeddings" in name or ".wpe." in name)
    head_params = head.weight.numel() if head is not None else 0
    tied = head is not None and embeddings is not None and head.weight is embeddings.weight
    body = n_total - n_embed - (0 if tied else head_params)
    layers, width = model_dimensions(model.config)
    attention = 12 * layers * width * context * (0.5 if causal else 1.0)
    return 6 * body + 6 * head_params * head_fraction + attention


def precision_of(args) -> str:
    if args.bf16:
        return "bf16"
    if args.fp16:
        return "fp16"
    return "tf32" if torch.cuda.is_available() and torch.backends.cuda.matmul.allow_tf32 else "fp32"


def device_peak_flops(precision: str, cache_dir: str | None = None) -> tuple[float | None, str]:
    """(peak FLOP/s, where the number came from)."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        for key, peaks in GPU_PEAK_FLOPS.items():
            if key in name:
                return peaks.get(precision), f"{key} data sheet ({precision})"
        return None, f"no peak known for {name}"
    return cpu_peak_flops(precision, cache_dir), f"CPU matmul probe ({precision})"


def cpu_peak_flops(precision: str, cache_dir: str | None = None) -> float:
    """The best rate of a few large matmuls this CPU has shown, kept in a cache. Each run probes again (well under
    a second) and keeps the higher of the two: a probe taken while the machine was busy would otherwise stay the
    "peak" for good and put MFU above 100%."""
    path = os.path.join(cache_dir or os.path.expanduser("~/.cache/lmzoo"), "cpu_peak_flops.json")
    try:
        with open(path) as f:
            cached = json.load(f)
    except (OSError, ValueError):
        cached = {}
    key = f"{precision}-{torch.get_num_threads()}threads"
    measured = matmul_flops(torch.bfloat16 if precision == "bf16" else torch.float32)
    if measured > cached.get(key, 0):
        cached[key] = measured
        from .records import atomic_write_json

        atomic_write_json(path, cached)
    return cached[key]


def matmul_flops(dtype, n: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of the fastest of `repeats` n x n matmuls."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


class ThroughputCallback(TrainerCallback):
    """Logs train_tokens_per_second, train_samples_per_second and train_mfu at every logging step, and keeps the
    whole-run averages in `summary()` for the results record."""

    def __init__(self, tokens_per_sample: int, flops_per_token: float, peak_flops: float | None, peak_source: str):
        self.tokens_per_sample = tokens_per_sample
        self.flops_per_token = flops_per_token
        self.peak_flops = peak_flops
        self.peak_source = peak_source
        self.samples_per_step = None
        self.window_start = None
        self.window_step = 0
        self.train_seconds = 0.0
        self.train_steps = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.samples_per_step = args.train_batch_size * args.gradient_accumulation_steps * args.world_size
        self.window_start, self.window_step = time.perf_counter(), state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and "loss" in logs:
            rates = self._close_window(state)
            if rates:
                logs.update(rates)

    def on_train_end(self, args, state, control, **kwargs):
        self._close_window(state)  # the steps after the last logging step count too

    def on_evaluate(self, args, state, control, **kwargs):
        # evaluation time is not training time: restart the window after it (the steps since the last log and
        # the evaluation's time are both left out)
        self.window_start, self.window_step = time.perf_counter(), state.global_step

    def _close_window(self, state) -> dict | None:
        if self.window_start is None:
            return None
        now = time.perf_counter()
        steps, seconds = state.global_step - self.window_step, now - self.window_start
        self.window_start, self.window_step = now, state.global_step
        if steps <= 0 or seconds <= 0:
            return None
        self.train_seconds += seconds
        self.train_steps += steps
        return self._rates(steps, seconds, prefix="train_")

    def _rates(self, steps: int, seconds: float, prefix: str) -> dict:
        samples = steps * self.samples_per_step / seconds
        tokens = samples * self.tokens_per_sample
        rates = {f"{prefix}samples_per_second": round(samples, 3), f"{prefix}tokens_per_second": round(tokens, 1)}
        if self.peak_flops:
            rates[f"{prefix}mfu"] = round(tokens * self.flops_per_token / self.peak_flops, 5)
        return rates

    def summary(self) -> dict:
        out = {"flops_per_token": self.flops_per_token, "peak_flops": self.peak_flops, "peak_source": self.peak_source}
        if self.train_steps and self.train_seconds:
            out.update(self._rates(self.train_steps, self.train_seconds, prefix=""))
        return out


class DivergenceGuard(TrainerCallback):
    """Stops training at the first NaN or infinite loss, before anything is saved from the diverged weights; the
    run is then recorded as diverged and the checkpoints written before it are kept. The Trainer reports each
    step's loss through `observe` (every step, not only at logging steps, so no checkpoint of a diverged model
    is written in between)."""

    def __init__(self):
        self.diverged_at_step = None
        self.bad_loss = None

    def observe(self, loss, step: int) -> None:
        if self.diverged_at_step is None and not torch.isfinite(loss).all().item():
            self.diverged_at_step, self.bad_loss = step, float(loss.detach().float().mean())

    def on_step_end(self, args, state, control, **kwargs):
        if self.diverged_at_step is not None:
            control.should_training_stop = True
            control.should_save = False
            control.should_evaluate = False
            print(f"[lmzoo] training diverged: loss {self.bad_loss} at step {self.diverged_at_step}; stopping and "
                  "keeping the last good checkpoint", flush=True)
