"""Callbacks of the training loop: the non-finite loss guard, the learning-rate monitor, the
training-speed record and the clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor as _LearningRateMonitor
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from esrt_lit.errors import Interrupted, NonFiniteLossError
from esrt_lit.profiling import synchronize

__all__ = ["LearningRateMonitor", "NonFiniteLossGuard", "StopOnSignal", "TrainingSpeed"]

log = logging.getLogger(__name__)


def _last_good_checkpoint(trainer: Trainer) -> str | None:
    paths = []
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint):
            paths += [cb.last_model_path, cb.best_model_path]
    existing = [Path(p) for p in paths if p and Path(p).is_file()]
    return str(max(existing, key=lambda p: p.stat().st_mtime)) if existing else None


class NonFiniteLossGuard(Callback):
    """Stop training at a NaN/inf loss; the bad step never reaches the weights.

    With a fused optimizer (``fused=True``, the default on CUDA, see
    :meth:`~esrt_lit.training.module.SRLitModule.configure_optimizers`) and no gradient scaler, the check
    costs no device sync: each step hands the optimizer a device flag (``optimizer.found_inf``, which
    fused Adam/AdamW read, as for gradient scaling) that makes the update a no-op when the loss is not
    finite, and the flags are read back every ``check_every_n_steps`` steps, before every checkpoint
    and at the end of training. Otherwise the loss is read back at every step, before its backward pass.
    Either way the run fails with :class:`NonFiniteLossError` naming the step and the last checkpoint
    written, and no checkpoint is written after a bad step, so the newest one on disk holds finite
    weights. Under DDP the decision is taken on every rank together.

    Args:
        check_every_n_steps: how often the deferred check reads the flags (default:
            ``trainer.log_every_n_steps``).
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        if check_every_n_steps is not None and check_every_n_steps < 1:
            raise ValueError(
                f"check_every_n_steps={check_every_n_steps}; expected a positive integer or null"
            )
        self.check_every_n_steps = check_every_n_steps
        self.deferred = False
        self._flag: torch.Tensor | None = None
        self._bad_steps: torch.Tensor | None = None
        self._first_bad: torch.Tensor | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        groups = [g for opt in trainer.optimizers for g in opt.param_groups]
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        self.deferred = bool(groups) and all(g.get("fused") for g in groups) and scaler is None
        device = trainer.strategy.root_device
        self._bad_steps = torch.zeros((), device=device)
        self._first_bad = torch.full((), -1, dtype=torch.long, device=device)
        log.info("non-finite loss guard: %s", "deferred (fused optimizer)" if self.deferred else "every step")

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        if not self.deferred:
            finite = bool(torch.isfinite(loss.detach()).all())
            if trainer.strategy.reduce_boolean_decision(finite, all=True):  # every rank stops together
                return
            value = loss.detach().float().item() if not finite else "not finite on another rank"
            where = f"epoch {trainer.current_epoch}, global step {trainer.global_step}"
            raise NonFiniteLossError(
                self._message(
                    trainer, f"train/loss is {value} at {where}", "training stopped before this step's update"
                )
            )
        flag = (~torch.isfinite(loss.detach())).any().float()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # asynchronous on the device, like the gradients
        self._flag = flag
        assert self._bad_steps is not None and self._first_bad is not None
        self._bad_steps += flag
        step = torch.full_like(self._first_bad, trainer.global_step)
        self._first_bad = torch.where((self._first_bad < 0) & (flag > 0), step, self._first_bad)

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        if self.deferred and self._flag is not None:
            optimizer.found_inf = self._flag  # fused Adam/AdamW leave weights and moments as they are

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        every = self.check_every_n_steps or max(1, trainer.log_every_n_steps)
        if self.deferred and trainer.global_step % every == 0:
            self.check(trainer)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: Any) -> None:
        if self.deferred:
            self.check(trainer)  # raising here writes no checkpoint

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.deferred:
            self.check(trainer)

    def check(self, trainer: Trainer) -> None:
        """Read the deferred flags (one device sync); raise :class:`NonFiniteLossError` if a step was bad."""
        if self._bad_steps is None or self._first_bad is None:
            return
        bad = int(self._bad_steps.item())
        if bad:
            what = f"train/loss was not finite at {bad} step(s), the first at global step {int(self._first_bad.item())}"
            raise NonFiniteLossError(self._message(trainer, what, "their updates were skipped on the device"))

    @staticmethod
    def _message(trainer: Trainer, what: str, skipped: str) -> str:
        ckpt = _last_good_checkpoint(trainer)
        if ckpt:
            advice = (
                f"the last good checkpoint is kept: {ckpt}. Lower optimizer.lr, set trainer.gradient_clip_val, "
                "or check the data, then resume from it (resume_dir=<run folder>, or ckpt_path=<that file>)"
            )
        else:
            advice = (
                "no checkpoint was written before it. Lower optimizer.lr, set trainer.gradient_clip_val, "
                "or check the data, then start the run again"
            )
        return f"{what}: {skipped}; {advice}"


class LearningRateMonitor(_LearningRateMonitor):
    """Lightning's :class:`~lightning.pytorch.callbacks.LearningRateMonitor`, idle in a run without a
    logger (``logger=none``, the debug modes) instead of refusing to start, and naming the learning rate
    of a lone optimizer ``lr`` with or without a scheduler (the module names its scheduler ``lr``). It
    writes at the loggers' own steps, so reading the learning rate costs no device sync."""

    def _find_names_from_optimizers(
        self, optimizers: list[Any], seen_optimizers: list[Any], seen_optimizer_types: Any
    ) -> tuple[list[list[str]], list[Any]]:
        names, unscheduled = super()._find_names_from_optimizers(
            optimizers, seen_optimizers, seen_optimizer_types
        )
        lone = len(optimizers) == 1 and len(unscheduled) == 1
        if lone and names == [[f"lr-{type(unscheduled[0]).__name__}"]]:
            names = [["lr"]]
        return names, unscheduled

    def on_train_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)


class TrainingSpeed(Callback):
    """How fast training runs, for ``metrics.json``: written to ``trainer.callback_metrics`` at the end.

    ``speed/first_step_s`` is the wall time of the fit's first training step (compilation included
    when the step is compiled); ``speed/it_per_s`` and ``speed/samples_per_s`` cover the steps after
    ``warmup_steps`` (``speed/from_step``) to the end of training, data loading, logging and
    checkpointing included and validation loops excluded (their total is ``speed/val_s``). The warm-up
    counts from the fit's first step (a resumed fit warms up again), and a fit of fewer than
    ``2 * warmup_steps`` steps is measured from its middle step, so that even the default 100-step run
    records its speed (from its second step when training stops before its planned end).
    The device is synchronised only at those few points.

    Args:
        warmup_steps: the step from which the steady-state speed is measured (at most half the run).
    """

    def __init__(self, warmup_steps: int = 100) -> None:
        if warmup_steps < 1:
            raise ValueError(f"warmup_steps={warmup_steps}; expected a positive integer")
        self.warmup_steps = warmup_steps
        self._reset()

    def _reset(self) -> None:
        self._first_start: float | None = None
        self.first_step_s: float | None = None
        self._clock: tuple[int, float] | None = None  # (step, time) where the steady-state clock started
        self._val_start: float | None = None
        self._val_in_window = 0.0
        self.val_s = 0.0
        self.samples_per_step = 0
        self._from_step = self.warmup_steps

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._reset()
        start, total = trainer.global_step, trainer.estimated_stepping_batches  # a resumed fit: its own steps
        warmup = (
            self.warmup_steps if total == float("inf") else min(self.warmup_steps, (int(total) - start) // 2)
        )
        self._from_step = start + warmup

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, *args: Any
    ) -> None:
        if self._first_start is None:
            synchronize(trainer.strategy.root_device)
            self._first_start = time.perf_counter()
            lr = batch["lr"] if isinstance(batch, dict) else batch[0]
            self.samples_per_step = len(lr) * trainer.world_size

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if self.first_step_s is None and self._first_start is not None:
            synchronize(trainer.strategy.root_device)
            now = time.perf_counter()
            self.first_step_s = now - self._first_start
            self._clock = (step, now)  # the fallback: from the second step on
        elif self._clock is not None and self._clock[0] < self._from_step <= step:
            synchronize(trainer.strategy.root_device)
            self._clock, self._val_in_window = (step, time.perf_counter()), 0.0

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "fit":
            synchronize(trainer.strategy.root_device)
            self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._val_start is not None:
            synchronize(trainer.strategy.root_device)
            elapsed = time.perf_counter() - self._val_start
            self.val_s += elapsed
            self._val_in_window += elapsed if self._clock is not None else 0.0
            self._val_start = None

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics: dict[str, float] = {"speed/val_s": self.val_s}
        if self.first_step_s is not None:
            metrics["speed/first_step_s"] = self.first_step_s
        if self._clock is not None and trainer.global_step > self._clock[0]:
            synchronize(trainer.strategy.root_device)
            start_step, start = self._clock
            seconds = time.perf_counter() - start - self._val_in_window
            rate = (trainer.global_step - start_step) / seconds
            metrics.update(
                {
                    "speed/from_step": float(start_step),
                    "speed/it_per_s": rate,
                    "speed/samples_per_s": rate * self.samples_per_step,
                }
            )
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
        log.info("training speed: %s", ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))


class StopOnSignal(Callback):
    """SIGTERM or SIGINT (Ctrl+C) ends a run resumably instead of killing it.

    Built on Lightning's own SIGTERM handling: its handler sets ``trainer.received_sigterm`` and the loops
    raise :class:`~lightning.pytorch.utilities.exceptions.SIGTERMException` at the end of the current
    training step (or evaluation batch). This callback makes SIGINT do the same (it calls Lightning's
    handler, which under DDP also signals the other processes), records the first signal, and on the
    exception saves ``checkpoints/last.ckpt`` with the trainer's own checkpoint content, so that
    ``resume_dir=<run folder>`` continues from that step exactly. Only the first process writes it, without
    waiting for the others (they may have stopped already); DDP keeps their weights and optimizer states
    equal to its own. A second Ctrl+C, or a signal outside ``trainer.fit``/``trainer.test`` (setting up,
    writing the records), raises :class:`~esrt_lit.cli.Interrupted` at once.

    Use it with :meth:`handling_signals` around the whole run; afterwards :attr:`signum` says whether a
    signal came, and :meth:`summary` and :meth:`message` what to record and say.

    Args:
        run_dir: the run folder (``checkpoints/last.ckpt`` is written in it).
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.signum: int | None = None
        self.saved = False
        self._trainer: Trainer | None = None
        self._stage: str | None = None

    @property
    def ckpt_path(self) -> Path:
        """Where the interrupted run's checkpoint goes: ``<run folder>/checkpoints/last.ckpt``."""
        return self.run_dir / "checkpoints" / "last.ckpt"

    @contextmanager
    def handling_signals(self) -> Iterator[StopOnSignal]:
        """Handle SIGTERM and SIGINT inside the block (the previous handlers come back after it).

        Nothing is changed outside the main thread, where Python cannot set signal handlers.
        """
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signum: signal.signal(signum, self._handle) for signum in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    @contextmanager
    def stopping(self) -> Iterator[None]:
        """Around ``trainer.fit``/``trainer.test``: the stop a recorded signal caused ends the block quietly
        (Lightning's ``SIGTERMException``, or the :class:`~esrt_lit.cli.Interrupted` of a second
        Ctrl+C); the caller then checks :attr:`signum`.

        Under DDP, a process other than the first may still be waiting in a collective operation when the
        first one stops (Lightning's ranks check the signal one step apart); the error it then gets is
        that stop too, which the first process reports.
        """
        try:
            yield
        except (SIGTERMException, Interrupted):
            if self.signum is None:
                raise
        except Exception as err:
            if self.signum is None or self._trainer is None or self._trainer.is_global_zero:
                raise
            log.info("stopped by %s (%s)", signal.Signals(self.signum).name, err)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
            self._stage = self._trainer.state.fn if self._trainer is not None else None
        # Lightning's handler while trainer.fit/test runs (it calls this one too), this one otherwise
        lightning = signal.getsignal(signal.SIGTERM)
        if lightning == self._handle or (not first and signum == signal.SIGINT):
            raise Interrupted(self.message(), signum)
        if first:
            log.warning(
                "%s received: stopping at the end of the current step (Ctrl+C again stops at once)",
                signal.Signals(signum).name,
            )
            if signum == signal.SIGINT and callable(lightning):
                lightning(signal.SIGTERM, frame)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer = trainer

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != TrainerFn.FITTING:
            return
        if trainer.is_global_zero:  # Trainer.save_checkpoint without its barrier
            checkpoint = trainer._checkpoint_connector.dump_checkpoint()
            trainer.strategy.save_checkpoint(checkpoint, self.ckpt_path)
            log.info("interrupted: checkpoint of step %d saved: %s", trainer.global_step, self.ckpt_path)
        self.saved = True

    def summary(self) -> str:
        """The signal and where it stopped the run, e.g. ``SIGTERM at step 12``, for ``metrics.json``."""
        assert self.signum is not None
        name = signal.Signals(self.signum).name
        if self._trainer is None:
            return f"{name} before training started"
        if self._stage == TrainerFn.TESTING:
            return f"{name} while testing"
        return f"{name} at step {self._trainer.global_step}"

    def message(self) -> str:
        """The one line that ends the run: where it stopped and how to resume."""
        resume = f"python -m esrt_lit.train resume_dir={self.run_dir}"
        if self.saved:
            advice = f"resume with: {resume}"
        elif self.ckpt_path.is_file():
            advice = f"stopped before saving; resume from the last checkpoint with: {resume}"
        else:
            advice = "no checkpoint was written: start a new run"
        return f"interrupted by {self.summary()}; {advice}"
