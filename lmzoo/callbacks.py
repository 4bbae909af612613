"""Trainer callbacks: throughput and MFU in the logs, and a guard against a diverged loss.

MFU = achieved model FLOP/s over the device's peak; both halves are defined in lmzoo.flops.
"""

import time

import torch
from transformers import TrainerCallback


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
