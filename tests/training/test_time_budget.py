"""The time budget: the steps a run trains follow the budget and the measured step rate (on a fake clock, so nothing
here depends on the machine's speed), the schedule ends at 0 at the last step, a budget too small says so, a fixed
length the user gives wins over a recipe's budget, and the command runs with one."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from pathlib import Path

import datasets
import pytest
from transformers import TrainerCallback
from transformers.optimization import get_linear_schedule_with_warmup

import hf_metaid as hm
from conftest import quiet_args, tiny_model
from hf_metaid.cli import build_parser, main
from hf_metaid.cli.settings_options import _model_and_training
from hf_metaid.training.time_budget import STEP_LIMIT, TimeBudget, TimeBudgetError, format_plan, process_started
from hf_metaid.training.trainer import build_trainer
from hf_metaid.workflow.training_run import fine_tune

datasets.disable_progress_bars()
pytestmark = pytest.mark.usefixtures("one_thread")


class FakeClock(TrainerCallback):
    """Seconds that pass only as the run says: ``step_seconds(step)`` at the end of each step (this callback runs
    before the budget's, so the budget reads the time after the step), and whatever a test adds to ``now``."""

    def __init__(self, now: float, step_seconds):
        self.now, self.step_seconds = now, step_seconds

    def __call__(self) -> float:
        return self.now

    def on_step_end(self, args, state, control, **kwargs):
        self.now += self.step_seconds(state.global_step)


def budget_run(tiny, tmp_path, clock: FakeClock, warmup_steps: int = 20, **budget):
    """A tiny Trainer run under a :class:`TimeBudget` on ``clock``; returns the trainer and the budget."""
    _, tokenizer, train = tiny
    args = quiet_args(
        tmp_path, max_steps=STEP_LIMIT, warmup_steps=warmup_steps, per_device_train_batch_size=8, use_cpu=True
    )
    trainer = build_trainer(tiny_model(tokenizer), tokenizer, train, args, callbacks=[clock])
    said: list[str] = []
    options = {"skip_steps": 5, "measure_steps": 10, "measure_seconds": 2.0, "min_margin_seconds": 1.0}
    time_budget = TimeBudget(clock=clock, report=said.append, **{**options, **budget}).attach(trainer)
    trainer.train()
    return trainer, time_budget, said


def used_rates(trainer) -> list[tuple[int, float]]:
    """(step, learning rate the step used), from the Trainer's log of every step."""
    return [(entry["step"], entry["learning_rate"]) for entry in trainer.state.log_history if "learning_rate" in entry]


def fixed_length_rates(base: float, warmup_steps: int, total: int) -> list[float]:
    """The rates of a fixed-length run of ``total`` steps: step s uses the schedule's value after s - 1 steps."""
    lambdas = get_linear_schedule_with_warmup(_probe_optimizer(base), warmup_steps, total).lr_lambdas[0]
    return [base * lambdas(step - 1) for step in range(1, total + 1)]


def _probe_optimizer(lr: float):
    import torch

    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


def test_the_steps_follow_the_budget_and_the_measured_rate_and_the_rate_ends_at_zero(tiny, tmp_path):
    """10 s spent before training, 2 steps per second, 5 s kept for evaluation, a 1-minute budget: the run trains
    what the 45 s left at the plan hold (less a 5% margin), and its schedule is that of a fixed-length run of exactly
    that many steps, warm-up included, ending at 0 at the last step."""
    clock = FakeClock(now=10.0, step_seconds=lambda step: 0.5)
    trainer, budget, said = budget_run(tiny, tmp_path, clock, minutes=1.0, started=0.0, reserve=5.0)
    plan_step = 5 + 10  # skipped, then measured (10 steps, 5 s >= 2 s)
    left = 60.0 - (10.0 + 0.5 * plan_step) - 5.0
    expected = plan_step + math.floor(left * 0.95 * 2.0)
    assert budget.steps_per_second == pytest.approx(2.0, rel=1e-12) and budget.reserve_seconds == 5.0
    assert budget.planned_steps == expected == trainer.state.global_step == trainer.args.max_steps
    assert clock.now <= 60.0 - 5.0  # the training ended before the reserve begins
    assert clock.now >= 60.0 - 5.0 - 0.05 * left - 0.5  # and used the budget, but for the margin
    rates = used_rates(trainer)
    assert [step for step, _ in rates] == list(range(1, expected + 1))
    assert [rate for _, rate in rates] == pytest.approx(fixed_length_rates(1e-3, 20, expected), rel=1e-9, abs=1e-15)
    assert trainer.optimizer.param_groups[0]["lr"] == 0.0  # the schedule's value at the last step
    summary = trainer.state.log_history[-1]  # samples counted from the steps run, not from the Trainer's bound
    assert summary["train_samples_per_second"] == pytest.approx(expected * 8 / summary["train_runtime"], rel=1e-3)
    epochs = trainer.state.global_step / len(trainer.get_train_dataloader())
    assert said[0].startswith(f"budget 1.0 min: {expected:,} steps = {epochs:.1f} epochs at 2.0 steps/s (")


def test_a_plan_made_after_the_warm_up_still_ends_the_rate_at_zero(tiny, tmp_path):
    """Without warm-up the decay has begun when the rate is known: from the plan on, the rate follows the linear
    decay to 0 at the new last step."""
    clock = FakeClock(now=0.0, step_seconds=lambda step: 0.5)
    trainer, budget, _ = budget_run(tiny, tmp_path, clock, warmup_steps=0, minutes=0.75, started=0.0)
    total = budget.planned_steps
    assert trainer.state.global_step == total
    after_plan = [(step, rate) for step, rate in used_rates(trainer) if step > 15]
    assert [rate for _, rate in after_plan] == pytest.approx(
        [1e-3 * (total - (step - 1)) / total for step, _ in after_plan], rel=1e-9
    )
    assert trainer.optimizer.param_groups[0]["lr"] == 0.0


@pytest.mark.parametrize(("later", "earlier_or_later"), ((1.0, "earlier"), (0.25, "later")))
def test_a_run_whose_rate_changes_moves_its_last_step(tiny, tmp_path, later, earlier_or_later):
    """The rate measured at the start (2 steps/s) halves, or doubles, after step 30: the checks move the last step
    so that the run still ends inside the budget, and the schedule still ends at 0 there."""
    clock = FakeClock(now=0.0, step_seconds=lambda step: 0.5 if step <= 30 else later)
    trainer, budget, said = budget_run(tiny, tmp_path, clock, minutes=1.0, started=0.0, reserve=5.0)
    first_plan = int(re.match(r"budget 1\.0 min: (\d+) steps", said[0]).group(1))
    moved = [re.search(r"steps/s since the plan; the last step moves from (\d+) to (\d+)", line) for line in said[1:]]
    assert moved and all(moved) and int(moved[0].group(1)) == first_plan
    assert (budget.planned_steps < first_plan) == (earlier_or_later == "earlier") and budget.planned_steps != first_plan
    assert trainer.state.global_step == budget.planned_steps
    assert clock.now <= 60.0 - 5.0  # inside the budget (a slower machine keeps more for its evaluation)
    if earlier_or_later == "later":  # and most of it used
        assert clock.now >= 60.0 - 5.0 - 2 * 0.05 * (60.0 - 0.5 * 15 - 5.0)
    assert trainer.optimizer.param_groups[0]["lr"] == 0.0


def test_the_reserve_function_is_measured_once_on_the_model_and_its_time_counts(tiny, tmp_path):
    """A reserve function gets the model and tokenizer when the rate is known; the seconds it returns and the
    seconds it takes both come off the training time."""
    calls = []
    clock = FakeClock(now=0.0, step_seconds=lambda step: 0.5)

    def reserve(model, tokenizer):
        calls.append((type(model).__name__, type(tokenizer).__name__))
        clock.now += 3.0  # the measurement's own time
        return 7.0

    trainer, budget, _ = budget_run(tiny, tmp_path, clock, minutes=1.0, started=0.0, reserve=reserve)
    assert calls == [("MetaIDForConditionalGeneration", "MetaIDTokenizer")] and budget.reserve_seconds == 7.0
    left = 60.0 - (0.5 * 15 + 3.0) - 7.0
    assert budget.planned_steps == 15 + math.floor(left * 0.95 * 2.0) == trainer.state.global_step


def test_a_budget_too_small_says_so(tiny, tmp_path):
    """Spent before training, or too short for the warm-up at the measured rate: an error with the figures."""
    spent = FakeClock(now=61.0, step_seconds=lambda step: 0.5)
    with pytest.raises(TimeBudgetError, match=r"time budget 1\.0 min: 61 s were spent before training began"):
        budget_run(tiny, tmp_path / "a", spent, minutes=1.0, started=0.0)
    slow = FakeClock(now=0.0, step_seconds=lambda step: 3.0)  # 45 s to the plan, then 3 steps fit, 20 warm up
    with pytest.raises(TimeBudgetError, match=r"too small for this run: .* 18 steps at 0\.3 steps/s, not more than"):
        budget_run(tiny, tmp_path / "b", slow, minutes=1.0, started=0.0, reserve=5.0)


def test_a_command_counts_its_budget_from_its_process_start():
    """The interpreter's start and imports count: the start is that of this process, which began before now."""
    started, now = process_started(), time.perf_counter()
    assert now - 600 < started <= now
    if Path("/proc/self/stat").is_file():  # Linux: this test runs well after the process began (its imports)
        assert started < now - 0.5


def test_time_budget_arguments_are_checked():
    with pytest.raises(ValueError, match="minutes must be"):
        TimeBudget(0)
    with pytest.raises(ValueError, match="reserve must be"):
        TimeBudget(1.0, reserve=-1.0)
    with pytest.raises(ValueError, match="time_budget must be a finite number >= 0, got -1"):
        hm.TrainingSettings(time_budget=-1)
    assert format_plan(15.0, 9216, 14.1, 576) == "budget 15.0 min: 9,216 steps = 16.0 epochs at 14.1 steps/s"


def test_max_steps_wins_over_the_budget_in_settings(tiny, tmp_path):
    """``max_steps`` > 0 is a fixed length: the run trains exactly that, whatever the budget says."""
    split, tokenizer, _ = tiny
    settings = hm.TrainingSettings(time_budget=0.01, max_steps=3, batch_size=8, warmup_steps=0, logging_steps=1)
    run = fine_tune(tiny_model(tokenizer), tokenizer, split["train"], tmp_path, settings, budget_start=-1e9)
    assert run.trainer.state.global_step == 3
    assert not any(isinstance(c, TimeBudget) for c in run.trainer.callback_handler.callbacks)


# ------------------------------------------------------------------------------------------------ command line
def settings_of(*argv: str) -> hm.TrainingSettings:
    return _model_and_training(build_parser().parse_args(list(argv)))[1]


@pytest.mark.parametrize("command", (("train", "--vocab", "v", "--out", "m"), ("demo",)))
def test_time_budget_option_and_a_given_length_winning_over_the_recipes_budget(command, capsys):
    fast, best = hm.recipes.get("fast").training, hm.recipes.get("best").training
    assert settings_of(*command).time_budget == 15.0 and settings_of(*command, "--recipe", "best") == best
    assert settings_of(*command, "--time-budget", "4").time_budget == 4.0
    assert settings_of(*command, "--recipe", "decoder-k100", "--time-budget", "2.5").time_budget == 2.5
    assert settings_of(*command, "--time-budget", "0") == dataclasses.replace(fast, time_budget=0.0)  # 16 epochs
    # a fixed length given turns the recipe's budget off: the same steps on any machine
    assert settings_of(*command, "--epochs", "3") == dataclasses.replace(fast, epochs=3.0, time_budget=0.0)
    assert settings_of(*command, "--recipe", "best", "--max-steps", "7").time_budget == 0.0
    assert settings_of(*command, "--epochs", "3", "--time-budget", "0").epochs == 3.0
    with pytest.raises(hm.InvalidArgumentError, match=r"--time-budget 4 and --epochs both set the run's length"):
        settings_of(*command, "--epochs", "3", "--time-budget", "4")
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*command, "--time-budget", "-1"])
    assert done.value.code == 2 and "time_budget must be a finite number >= 0" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("command", ("train", "demo"))
def test_a_command_with_a_budget_ends_at_the_steps_it_planned(command, tiny_file, tmp_path, capsys):
    """A real run on the clock: whatever the machine's speed, the run ends at the last step its plan set, and the
    demo keeps time for its evaluation and saving (the 10 s for saving at least)."""
    vocab, model = tmp_path / "vocab", tmp_path / "model"
    small = ["--data", str(tiny_file), "--out", str(model), "--num-clusters", "4", "--d-model", "32"]
    if command == "train":
        assert main(["index", "--data", str(tiny_file), "--out", str(vocab), "--num-clusters", "4"]) == 0
        small = ["--data", str(tiny_file), "--vocab", str(vocab), "--out", str(model), "--d-model", "32"]
    quick = ["--batch-size", "8", "--warmup-steps", "2", "--time-budget", "0.4", "--threads", "1"]
    assert main([command, *small, *quick]) == 0
    printed = capsys.readouterr().out
    plans = re.findall(
        r"^budget 0\.4 min: ([\d,]+) steps = [\d.]+ epochs at [\d.]+ steps/s \(\d+ s spent, (\d+) s kept",
        printed,
        re.MULTILINE,
    )
    moves = re.findall(r"the last step moves from [\d,]+ to ([\d,]+)", printed)
    assert len(plans) == 1 and int(plans[0][1]) >= (10 if command == "demo" else 0)
    planned = int((moves or [plans[0][0]])[-1].replace(",", ""))
    row = "steps" if command == "train" else "train steps"
    assert re.search(rf"^{row} +{planned:,} \(time budget 0\.4 min\) *$", printed, re.MULTILINE), printed
    saved = json.loads((model / "metaid_training.json").read_text())  # the saved record gives the run's length
    assert saved["steps"] == saved["max_steps"] == planned
