"""A training run that fits a time budget: its length is set from the step rate it measures on its first steps.

A fixed number of epochs takes minutes on a small log and hours on a large one. With a budget, the run trains at
most :data:`STEP_LIMIT` steps as far as the ``Trainer`` knows, and :class:`TimeBudget` (a ``TrainerCallback``)

1. skips the first ``skip_steps`` steps (cold caches, first allocations), then measures the step rate over at least
   ``measure_steps`` steps and ``measure_seconds`` seconds;
2. takes what is left of the budget: the deadline (the caller's start + the budget) less the time already spent
   (before training and on the measured steps), less a reserve for what follows training (evaluation, saving; a
   number of seconds, or a function that measures it on the model, :func:`evaluation_reserve`), less a safety
   margin;
3. sets the run's last step to what fits at the measured rate, and retargets the learning-rate schedule to it, so
   that warm-up and the linear decay end at 0 exactly at that step, as in a fixed-length run of that many steps;
4. checks the rate as it goes, and moves the last step (the schedule with it) where the rate since the plan would
   end training more than half the margin away from its planned end: earlier where the run slowed down, later
   where it sped up.

A budget too small for the run (spent before training, or with no room for the warm-up steps) raises
:class:`TimeBudgetError`, naming the figures.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.optimization import get_scheduler

from ..checks import check_int, check_number
from ..errors import InvalidArgumentError, MetaIDError

__all__ = ["STEP_LIMIT", "TimeBudget", "TimeBudgetError", "evaluation_reserve", "format_plan", "process_started"]

# The Trainer's max_steps under a budget until the plan is made: large enough never to end a run, small enough for
# the Trainer's bookkeeping (its epoch loop is a range).
STEP_LIMIT = 10**9

Clock = Callable[[], float]
Reserve = float | Callable[[object, object], float]


class TimeBudgetError(MetaIDError, ValueError):
    """The time budget cannot hold the run: spent before training began, or too short for the warm-up steps at the
    measured rate; the message gives the figures and what to change."""


class TimeBudget(TrainerCallback):
    """Ends a ``Trainer`` run inside a time budget, with its learning-rate schedule ending at 0 at the last step.

    Give the ``Trainer`` ``max_steps=STEP_LIMIT`` (any bound above what can fit) and add this callback with
    :meth:`attach`. Single-process runs only: each process would measure its own rate and choose its own last step.

    Args:
        minutes: the budget, counted from ``started``.
        started: when the budget began, on ``clock``'s scale (e.g. ``time.perf_counter()`` at the command's start,
            so that indexing and prompt building count); ``None``: when the callback is built.
        reserve: seconds kept for what follows training (evaluation, saving), or a function of the model and its
            tokenizer (the Trainer's ``processing_class``) that measures them, such as :func:`evaluation_reserve`;
            called once, when the rate is known (its own time counts against the budget).
        clock: seconds on a monotonic scale (``time.perf_counter``); tests inject a fake one.
        skip_steps: first steps left out of the measurement (cold caches).
        measure_steps: the measurement lasts at least this many steps...
        measure_seconds: ...and at least this many seconds.
        margin: share of the time left for training kept unused, at least ``min_margin_seconds``: the run's speed
            varies (other jobs, longer batches) and the end of training has costs the rate does not show.
        report: where the plan and its changes are said (one line each); ``None`` says nothing.

    Attributes:
        planned_steps: the last step set by the plan (and moved by the checks), ``None`` before the plan.
        steps_per_second: the measured rate (the one the last step was last set from).
        reserve_seconds: the reserve the plan subtracted.
    """

    def __init__(
        self,
        minutes: float,
        *,
        started: float | None = None,
        reserve: Reserve = 0.0,
        clock: Clock = time.perf_counter,
        skip_steps: int = 5,
        measure_steps: int = 40,
        measure_seconds: float = 5.0,
        margin: float = 0.05,
        min_margin_seconds: float = 5.0,
        report: Callable[[str], None] | None = print,
    ) -> None:
        check_number("minutes", minutes, 0, above=True)
        check_int("skip_steps", skip_steps, minimum=0)
        check_int("measure_steps", measure_steps, minimum=1)
        check_number("measure_seconds", measure_seconds, 0)
        check_number("margin", margin, 0, 1)
        check_number("min_margin_seconds", min_margin_seconds, 0)
        if not callable(reserve):
            check_number("reserve", reserve, 0)
        if not callable(clock):
            raise InvalidArgumentError(f"clock must be a function returning seconds, got {clock!r}")
        self.minutes = float(minutes)
        self.clock = clock
        self.started = clock() if started is None else float(started)
        self.deadline = self.started + 60.0 * self.minutes
        self.reserve = reserve
        self.skip_steps, self.measure_steps, self.measure_seconds = skip_steps, measure_steps, float(measure_seconds)
        self.margin, self.min_margin_seconds = float(margin), float(min_margin_seconds)
        self.report = report
        self.planned_steps: int | None = None
        self.steps_per_second: float | None = None
        self.reserve_seconds: float | None = None
        self._first_step: int | None = None
        self._measure_from: tuple[int, float] | None = None  # (step, time) where the measurement starts
        self._anchor: tuple[int, float] = (0, 0.0)  # (step, time) where the plan was made
        self._last_check = 0.0
        self._plan_rate = 0.0
        self._training_end: float | None = None  # the time by which training must end, after the plan
        self._margin_seconds = 0.0
        self._handler = None

    def attach(self, trainer) -> TimeBudget:
        """Add this callback to ``trainer``, before the callback that shows the logs (whose summary this one
        corrects, :meth:`on_log`) and whose progress bar then shows the planned steps; returns ``self``."""
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        handler = trainer.callback_handler
        shows = [i for i, cb in enumerate(handler.callbacks) if isinstance(cb, (PrinterCallback, ProgressCallback))]
        handler.callbacks.insert(shows[0] if shows else len(handler.callbacks), self)
        self._handler = handler
        return self

    # ------------------------------------------------------------------------------------------------ events
    def on_train_begin(self, args, state, control, **kwargs):
        if args.world_size > 1:
            raise InvalidArgumentError(
                f"a time budget needs a single-process run (this one has {args.world_size} processes, each of which "
                "would choose its own last step); give a fixed length (max_steps or epochs) instead"
            )
        now = self.clock()
        if now >= self.deadline:
            raise TimeBudgetError(
                f"time budget {self.minutes:.1f} min: {now - self.started:.0f} s were spent before training began, "
                "nothing is left to train; give a larger budget, or a fixed length (epochs or max steps)"
            )
        self._first_step = state.global_step
        self._set_bars(None)  # a count until the plan, not a bar toward STEP_LIMIT

    def on_step_end(self, args, state, control, **kwargs):
        step, now = state.global_step, self.clock()
        if self.planned_steps is None:
            if self._measure_from is None:
                if step - self._first_step >= self.skip_steps:
                    self._measure_from = (step, now)
                return control
            first, since = self._measure_from
            if step - first < self.measure_steps or now - since < self.measure_seconds:
                return control
            self._plan(args, state, (step - first) / max(now - since, 1e-9), kwargs)
        else:
            self._check(args, state, kwargs)
        if step >= (self.planned_steps or math.inf):
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        """The Trainer counts the samples of its summary from the step bound it started with (``STEP_LIMIT``):
        count them from the steps run, in the logs and in the log history."""
        if self.planned_steps is None or not logs or not logs.get("train_runtime"):
            return control
        if "train_samples_per_second" in logs:
            batch = args.train_batch_size * args.gradient_accumulation_steps * args.world_size
            value = round((state.global_step - self._first_step) * batch / logs["train_runtime"], 3)
            logs["train_samples_per_second"] = value
            if state.log_history and "train_samples_per_second" in state.log_history[-1]:
                state.log_history[-1]["train_samples_per_second"] = value
        return control

    # ------------------------------------------------------------------------------------------------ the plan
    def _plan(self, args, state, rate: float, kwargs) -> None:
        """The last step that fits at ``rate``, and the schedule retargeted to it."""
        self.steps_per_second = rate
        reserve = self.reserve
        if callable(reserve):
            reserve = reserve(kwargs.get("model"), kwargs.get("processing_class"))
        if not (isinstance(reserve, (int, float)) and math.isfinite(reserve) and reserve >= 0):
            raise InvalidArgumentError(f"the reserve function must return seconds >= 0, got {reserve!r}")
        self.reserve_seconds = float(reserve)
        step, now = state.global_step, self.clock()
        available = self.deadline - now - self.reserve_seconds
        self._margin_seconds = max(self.margin * available, self.min_margin_seconds)
        more = math.floor(max(available - self._margin_seconds, 0.0) * rate)
        total = step + more
        warmup = args.get_warmup_steps(total)
        if more < 1 or total <= warmup:
            raise TimeBudgetError(
                f"time budget {self.minutes:.1f} min is too small for this run: {max(available, 0):.0f} s are left "
                f"for training after {now - self.started:.0f} s spent and {self.reserve_seconds:.0f} s kept for "
                f"evaluation and saving, {total:,} steps at {rate:.1f} steps/s, not more than the {warmup:,} warm-up "
                "steps; give a larger budget, fewer warm-up steps, or a fixed length (epochs or max steps)"
            )
        self._training_end = self.deadline - self.reserve_seconds - self._margin_seconds
        self._retarget(args, state, total, kwargs)
        self._anchor, self._last_check, self._plan_rate = (step, now), now, rate
        self._say(
            format_plan(self.minutes, total, rate, _steps_per_epoch(args, kwargs))
            + f" ({now - self.started:.0f} s spent, {self.reserve_seconds:.0f} s kept for evaluation and saving, "
            f"{self._margin_seconds:.0f} s margin)"
        )

    def _check(self, args, state, kwargs) -> None:
        """Every twentieth of the planned training time (at least 5 s): where the rate since the plan would end
        training more than half the margin away from its end, past it or short of it, the last step moves to what
        fits at that rate, and the schedule with it. The rate since the plan, not that of the last seconds: a few
        slow seconds on a shared machine move the end little, a lasting change moves it more at each check. A
        machine that slowed down will evaluate slower too: the reserve grows by the same factor (it never shrinks)."""
        step, now = state.global_step, self.clock()
        first, since = self._anchor
        if now - self._last_check < max((self._training_end - since) / 20, 5.0) or step <= first:
            return
        self._last_check = now
        rate = (step - first) / (now - since)
        end = self.deadline - self.reserve_seconds * max(self._plan_rate / rate, 1.0) - self._margin_seconds
        if abs(now + (self.planned_steps - step) / rate - end) <= self._margin_seconds / 2:
            return
        self._training_end = end
        total = min(max(step + math.floor(max(end - now, 0.0) * rate), step + 1), STEP_LIMIT)
        if total == self.planned_steps:
            return
        before, self.steps_per_second = self.planned_steps, rate
        self._retarget(args, state, total, kwargs)
        self._say(f"time budget: {rate:.1f} steps/s since the plan; the last step moves from {before:,} to {total:,}")

    def _retarget(self, args, state, total: int, kwargs) -> None:
        """Make ``total`` the run's last step: the Trainer's ``max_steps`` (its flow callback stops there; the
        arguments' too, read only when a run starts), the progress bar, and the schedule, whose rate functions are
        replaced by those of the same schedule built for ``total`` steps, and whose current rate is set from them."""
        self.planned_steps = total
        state.max_steps = args.max_steps = total  # the arguments saved with the model then give this run's length
        scheduler = kwargs.get("lr_scheduler")
        scheduler = getattr(scheduler, "scheduler", scheduler)  # accelerate's wrapper, where there is one
        if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
            raise InvalidArgumentError(
                f"a time budget retargets a LambdaLR schedule (the Trainer's linear, cosine, constant ...), got "
                f"{type(scheduler).__name__}; give a fixed length instead"
            )
        probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        fresh = get_scheduler(
            args.lr_scheduler_type,
            optimizer=probe,
            num_warmup_steps=args.get_warmup_steps(total),
            num_training_steps=total,
            scheduler_specific_kwargs=args.lr_scheduler_kwargs,
        )
        scheduler.lr_lambdas = [fresh.lr_lambdas[0]] * len(scheduler.lr_lambdas)
        position = scheduler.last_epoch
        rates = [base * rate(position) for base, rate in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)]
        for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
            group["lr"] = rate
        scheduler._last_lr = rates
        self._set_bars(total)

    def _set_bars(self, total: int | None) -> None:
        """The total of the Trainer's progress bar (``None``: a count)."""
        for callback in getattr(self._handler, "callbacks", ()):
            bar = getattr(callback, "training_bar", None)
            if bar is not None:
                bar.total = total
                bar.refresh()

    def _say(self, line: str) -> None:
        if self.report is not None:
            self.report(line)


def process_started() -> float:
    """When this process started, on ``time.perf_counter``'s scale (Linux's ``/proc``; elsewhere, or where that reads
    oddly, now): a command's budget then counts the interpreter's start and imports, seconds on a loaded machine."""
    now = time.perf_counter()
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return now
    return started if now - 600 < started <= now else now


def format_plan(minutes: float, steps: int, rate: float, steps_per_epoch: int | None) -> str:
    """``budget 15.0 min: 9,216 steps = 16.0 epochs at 14.1 steps/s``: the plan in one line (no epochs where the
    data's length is unknown)."""
    epochs = f" = {steps / steps_per_epoch:.1f} epochs" if steps_per_epoch else ""
    return f"budget {minutes:.1f} min: {steps:,} steps{epochs} at {rate:.1f} steps/s"


def _steps_per_epoch(args, kwargs) -> int | None:
    """Optimizer steps per epoch, as the Trainer counts them; ``None`` for data of unknown length."""
    try:
        return max(len(kwargs["train_dataloader"]) // args.gradient_accumulation_steps, 1)
    except (KeyError, TypeError):
        return None


def evaluation_reserve(
    split, *, sample: int = 256, after_seconds: float = 10.0, extra_users: int = 0, **protocol
) -> Callable[[object, object], float]:
    """A ``reserve`` for :class:`TimeBudget` that measures the evaluation that follows training: given the model
    being trained and its tokenizer, it decodes the first ``sample`` users of ``split`` with ``protocol`` (options of
    :func:`~hf_metaid.evaluation.evaluator.evaluate_recommender`: ``mode``, ``exclude_seen``, ``batch_size`` ...)
    and scales the seconds to the whole split (``limit`` users where given); ``after_seconds`` are added for saving
    and reloading the model. ``extra_users``: more users decoded the same way after training (the chain prior's
    calibration on validation) to keep time for.

    Decoding costs about the same on a half-trained model as on a trained one (the same beams over the same item
    tree), and the sample's first batch pays for cold caches, so the estimate errs on the long side.
    """
    from ..evaluation.evaluator import evaluate_recommender

    check_int("sample", sample, minimum=1)
    check_number("after_seconds", after_seconds, 0)
    limit = protocol.pop("limit", None)
    check_int("extra_users", extra_users, minimum=0)
    users = split.num_rows if limit is None else min(split.num_rows, limit)

    def measure(model, tokenizer) -> float:
        if users == 0:
            return after_seconds
        started = time.perf_counter()
        with torch.random.fork_rng(devices=[]):  # decoding draws nothing, but the run's random stream stays its own
            evaluate_recommender(
                model, tokenizer, split, limit=min(sample, users), progress=False, min_known_targets=0.0, **protocol
            )
        return (time.perf_counter() - started) * (users + extra_users) / min(sample, users) + after_seconds

    return measure
