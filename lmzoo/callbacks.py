"""Trainer callbacks: throughput and MFU in the logs, a guard against a diverged loss, and a time limit.

MFU = achieved model FLOP/s over the device's peak; both halves are defined in lmzoo.flops.
"""

import time

import torch
from transformers import TrainerCallback


# Steps left out of the throughput at the start of training: the first steps pay for start-up (memory
# allocation, kernel selection, data-loader workers, torch.compile's compilation and recompiles).
WARMUP_STEPS = 10


class ThroughputCallback(TrainerCallback):
    """Logs train_tokens_per_second, train_samples_per_second and train_mfu at every logging step, and keeps the
    whole-run averages in `summary()` for the results record. Timing starts after the first WARMUP_STEPS steps of
    each train() call (half the steps when there are fewer than twice that) and pauses over evaluations."""

    def __init__(self, tokens_per_sample: int, flops_per_token: float, peak_flops: float | None, peak_source: str,
                 warmup_steps: int = WARMUP_STEPS, clock=time.perf_counter):
        self.tokens_per_sample = tokens_per_sample
        self.flops_per_token = flops_per_token
        self.peak_flops = peak_flops
        self.peak_source = peak_source
        self.warmup_steps = warmup_steps
        self.clock = clock
        self.samples_per_step = None
        self.timing_from_step = None  # the step after which timing starts
        self.window_start = None  # None: not timing (warm-up)
        self.window_step = 0
        self.train_seconds = 0.0
        self.train_steps = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.samples_per_step = args.train_batch_size * args.gradient_accumulation_steps * args.world_size
        remaining = max(state.max_steps - state.global_step, 0)
        self.timing_from_step = state.global_step + min(self.warmup_steps, remaining // 2)
        self.window_start = None
        self._start_after_warmup(state)

    def on_step_end(self, args, state, control, **kwargs):
        self._start_after_warmup(state)

    def _start_after_warmup(self, state) -> None:
        if self.window_start is None and state.global_step >= self.timing_from_step:
            self.window_start, self.window_step = self.clock(), state.global_step

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
        if self.window_start is not None:
            self.window_start, self.window_step = self.clock(), state.global_step

    def _close_window(self, state) -> dict | None:
        if self.window_start is None:
            return None
        now = self.clock()
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
        out = {"flops_per_token": self.flops_per_token, "peak_flops": self.peak_flops, "peak_source": self.peak_source,
               "timed_steps": self.train_steps, "timed_from_step": self.timing_from_step}
        if self.train_steps and self.train_seconds:
            out.update(self._rates(self.train_steps, self.train_seconds, prefix=""))
        return out


class DivergenceGuard(TrainerCallback):
    """Stops training at the first NaN or infinite loss, before anything is saved from the diverged weights; the
    run is then recorded as diverged and the checkpoints written before it are kept.

    The Trainer shows it every micro-batch's loss through `observe`, which only updates two tensors on the device:
    reading a loss on the host every step would make the CPU wait for the GPU every step. The flag is read once
    per logging, evaluation or saving step, before the Trainer acts on that step (callbacks run after its flow
    callback has decided), every `check_every` steps, and when `diverged_at_step` is asked for: so no checkpoint of
    a diverged model is written, and the step recorded is the exact first bad one."""

    def __init__(self, check_every: int = 100):
        self.check_every = check_every
        self._first_bad_step = None  # on the device: -1 until a loss is not finite
        self._bad_loss = None
        self._diverged_at_step = None
        self.bad_loss = None

    def observe(self, loss, step: int) -> None:
        loss = loss.detach()
        if self._first_bad_step is None:
            self._first_bad_step = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._bad_loss = torch.zeros((), dtype=torch.float32, device=loss.device)
        first = ~torch.isfinite(loss).all() & (self._first_bad_step < 0)
        step_here = torch.full((), step, dtype=torch.long, device=loss.device)  # a fill kernel, not a copy
        self._first_bad_step = torch.where(first, step_here, self._first_bad_step)
        self._bad_loss = torch.where(first, loss.float().mean(), self._bad_loss)

    @property
    def diverged_at_step(self) -> int | None:
        """The first step whose loss was not finite, or None (reads the device flag: one host sync)."""
        if self._diverged_at_step is None and self._first_bad_step is not None:
            step = int(self._first_bad_step)
            if step >= 0:
                self._diverged_at_step, self.bad_loss = step, float(self._bad_loss)
        return self._diverged_at_step

    def on_step_end(self, args, state, control, **kwargs):
        due = (control.should_save or control.should_evaluate or control.should_log or control.should_training_stop
               or state.global_step % self.check_every == 0 or state.global_step >= state.max_steps)
        if due and self.diverged_at_step is not None:
            control.should_training_stop = True
            control.should_save = False
            control.should_evaluate = False
            print(f"[lmzoo] training diverged: loss {self.bad_loss} at step {self.diverged_at_step}; stopping and "
                  "keeping the last good checkpoint", flush=True)


class TrainingTimeLimit(TrainerCallback):
    """Stops training once `minutes` have passed since it began, through the Trainer's own should_training_stop,
    so that evaluation, saving and the record still happen (a run killed from outside leaves none of them).

    Every process must stop at the same step, or the others wait forever in their next collective: with several
    processes the main process's clock decides, broadcast to the rest every `check_every` steps (one small
    collective then, rather than a host sync every step); a single process reads its clock every step."""

    def __init__(self, minutes: float, check_every: int = 10, clock=time.monotonic):
        self.seconds = 60 * minutes
        self.check_every = check_every
        self.clock = clock
        self.started = None
        self.stopped_at_step = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.clock()

    def on_step_end(self, args, state, control, **kwargs):
        several = args.world_size > 1
        if several and state.global_step % self.check_every:
            return
        expired = self.clock() - self.started >= self.seconds
        if several:
            import torch.distributed as dist

            flag = torch.tensor([int(expired)], device=args.device)
            dist.broadcast(flag, src=0)
            expired = bool(flag.item())
        if expired and not control.should_training_stop:
            control.should_training_stop = True
            self.stopped_at_step = state.global_step
            print(f"[lmzoo] time limit of {self.seconds / 60:g} min reached at step {state.global_step} of "
                  f"{state.max_steps}: stopping, then evaluating and saving as usual", flush=True)
