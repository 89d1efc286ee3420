"""The LightningModule that trains and scores an SR network (ESRT, Lu et al., arXiv 2108.11084).

The released training recipe (Sec. 4.1 and the authors' code) is L1 loss, Adam (lr 2e-4, betas
0.9/0.999) and the learning rate halved every 200 epochs (``conf/``: ``loss=l1 optimizer=adam
scheduler=step``); built without a scheduler, the module keeps the rate constant. Validation and test score every
benchmark loader with the protocol of the published tables (:mod:`esrt_lit.metrics`: MATLAB Y,
``scale`` pixels cropped, 8-bit rounding, mean of per-image values) and log
``{stage}/{benchmark}/{psnr|ssim}``, plus ``val/<set>/psnr_best`` (carried across resumes by the
checkpoint) and bicubic's score on the same images (``val/<set>/psnr_bicubic``, a reference line).
Validation also logs a few fixed crops as ``bicubic | network | ground truth`` images (W&B and
TensorBoard loggers).

The network's constructor arguments are saved as hyper-parameters (``net``: a ``_target_`` mapping),
so :func:`esrt_lit.models.checkpoint.load_network` rebuilds it from a checkpoint with ``weights_only=True``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchmetrics import Metric

from esrt_lit.metrics import METRICS, PRIMARY
from esrt_lit.models.bicubic import Bicubic
from esrt_lit.training.released import OPTIMIZER as RELEASED

__all__ = ["CharbonnierLoss", "SRLitModule", "compile_mode", "describe_net"]

log = logging.getLogger(__name__)

#: Validation/test logs bicubic's scores beside the network's, under this prefix (``bicubic_psnr``).
BICUBIC = "bicubic_"
#: The key of the best value of :data:`~esrt_lit.metrics.PRIMARY` per validation set (``psnr_best``).
BEST = f"{PRIMARY.name}_best"
#: The released recipe's optimiser (:data:`esrt_lit.training.released.OPTIMIZER`: Adam, lr 2e-4, betas
#: (0.9, 0.999)), the module's default; ``conf/optimizer/adam.yaml`` composes from the same node.
RELEASED_OPTIMIZER = functools.partial(torch.optim.Adam, lr=RELEASED["lr"], betas=tuple(RELEASED["betas"]))
#: ``compile`` values: ``auto``, or a :func:`torch.compile` mode (``True`` is ``"default"``).
COMPILE_MODES = ("auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: Compiled steps after a new graph during which an out-of-memory error is taken for a failed capture:
#: ``reduce-overhead`` warms a graph up at its first call and records its CUDA graphs at the second.
CAPTURE_STEPS = 3


def compile_mode(option: bool | str, device_type: str, world_size: int) -> str | None:
    """The :func:`torch.compile` mode of the training step for the ``compile`` option, or None (eager).

    ``auto`` is the fast path where it pays: on one CUDA device ``reduce-overhead`` (inductor kernels
    replayed as CUDA graphs: the step is launch-bound, ~75 ms eager against ~20 ms captured at batch 16,
    LR patch 48 on an H200); under DDP ``default`` (fused kernels, no graphs); on a CPU eager (compiling
    costs minutes there and buys little).

    Raises:
        ValueError: another value.
    """
    if option is False or option is None:
        return None
    if option is True:
        return "default"
    if option not in COMPILE_MODES:
        raise ValueError(f"compile={option!r}; expected true, false or one of {', '.join(COMPILE_MODES)}")
    if option != "auto":
        return str(option)
    if device_type != "cuda":
        return None
    return "reduce-overhead" if world_size == 1 else "default"


def _graph_count() -> int:
    """How many graphs dynamo has compiled in this process (it is imported by then: compiling imports it)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _first_line(err: BaseException) -> str:
    """``Type: first line of the message`` of ``err``, the compiler's own error named after the wrapper
    (dynamo's ``BackendCompilerFailed`` opens with a line naming the backend), at most 200 characters."""
    inner = getattr(err, "inner_exception", None)
    shown = inner if isinstance(inner, BaseException) else err
    lines = str(shown).strip().splitlines()
    text = type(shown).__name__ + (f": {lines[0]}" if lines else "")
    if shown is not err:
        text = f"{type(err).__name__}: {text}"
    return text if len(text) <= 200 else text[:199] + "…"


class CharbonnierLoss(nn.Module):
    """Charbonnier loss ``mean(sqrt((x - y)² + eps²))``, a differentiable L1.

    Args:
        eps: smoothing constant.
    """

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        if eps <= 0:
            raise ValueError(f"CharbonnierLoss: eps={eps}; expected > 0")
        self.eps = eps

    def forward(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((preds - target).pow(2) + self.eps**2).mean()


def describe_net(net: nn.Module) -> dict[str, Any] | None:
    """``{"_target_": "module.Class", **net.config}`` for a network exposing a ``config`` dict, else None."""
    config = getattr(net, "config", None)
    if not isinstance(config, Mapping):
        return None
    return {"_target_": f"{type(net).__module__}.{type(net).__qualname__}", **config}


def _plain(value: Any) -> Any:
    """Hydra/OmegaConf containers to plain Python (checkpoints stay ``weights_only``-loadable)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _persistent(metric: Metric) -> Metric:
    """``metric`` in float64 with its states in the module's state dict, so in checkpoints."""
    metric.persistent(True)
    return metric.set_dtype(torch.float64)


class SRLitModule(LightningModule):
    """Train, validate and test a super-resolution network.

    Args:
        net: the network, ``[B, 3, h, w]`` in [0, 1] → ``[B, 3, h·s, w·s]``; must have an integer
            ``scale`` attribute or ``config["scale"]``.
        loss: pixel loss ``(sr, hr) -> scalar`` (default L1, as released).
        optimizer: ``params -> Optimizer`` (a Hydra ``_partial_``; default :data:`RELEASED_OPTIMIZER`).
        scheduler: ``optimizer -> LRScheduler`` or None (a Hydra ``_partial_``).
        scheduler_interval: ``epoch`` or ``step``.
        ema_decay: keep an exponential moving average of the weights with this decay (e.g. 0.999)
            and validate, test and export it; None disables it.
        compile: compile the training step (network and loss) with :func:`torch.compile`: ``auto``
            (see :func:`compile_mode`), true (mode ``default``), false, or a mode name. Validation and
            test always run the network eagerly (their images differ in size, which would recompile).
        log_images: how many images of the first validation set are logged as crops per validation.
        image_crop: side of the logged crops, in LR pixels.
        net_config: the network's ``_target_`` mapping, saved so a checkpoint can rebuild it (default:
            :func:`describe_net` of ``net``).

    Raises:
        ValueError: a network without a scale, or an invalid option.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "epoch",
        ema_decay: float | None = None,
        compile: bool | str = False,
        log_images: int = 3,
        image_crop: int = 48,
        net_config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval={scheduler_interval!r}; expected 'epoch' or 'step'")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay={ema_decay}; expected a number in (0, 1) or null")
        if compile not in (True, False) and compile not in COMPILE_MODES:
            raise ValueError(
                f"compile={compile!r}; expected true, false or one of {', '.join(COMPILE_MODES)}"
            )
        if log_images < 0 or image_crop < 1:
            raise ValueError(f"log_images={log_images}, image_crop={image_crop}; expected >= 0 and >= 1")
        scale = getattr(net, "scale", None) or (getattr(net, "config", None) or {}).get("scale")
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f"{type(net).__name__} has no integer 'scale' attribute; the SR module needs it")
        config = _plain(net_config) if net_config is not None else describe_net(net)
        self.save_hyperparameters(
            {
                "net": config,
                "scheduler_interval": scheduler_interval,
                "ema_decay": ema_decay,
                "compile": compile,
                "log_images": log_images,
                "image_crop": image_crop,
            },
            logger=False,
        )
        self.net = net
        self.scale = scale
        self.loss_fn = loss if loss is not None else nn.L1Loss()
        self.optimizer_factory = optimizer if optimizer is not None else RELEASED_OPTIMIZER
        self.scheduler_factory = scheduler
        self.net_ema: AveragedModel | None = None
        if ema_decay is not None:
            self.net_ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
            self.net_ema.requires_grad_(False)
        self.bicubic = Bicubic(scale)
        self.val_names: list[str] = []
        self.test_names: list[str] = []
        self.val_metrics = nn.ModuleDict()
        self.test_metrics = nn.ModuleDict()
        #: per validation set, the best value of the primary metric so far (its direction's tracker, state in the checkpoint)
        self.val_best = nn.ModuleDict()
        #: bicubic's scores per stage and set, ``{"val": {"Set5": {"psnr": ..., "ssim": ...}}, "test": ...}``
        self.bicubic_scores: dict[str, dict[str, dict[str, float]]] = {"val": {}, "test": {}}
        #: the latest evaluation scores in full precision, ``{"val/Set5/psnr": 32.1, ...}``
        self.scores: dict[str, float] = {}
        #: the last validation's ``val/...`` scores stored in the checkpoint last loaded (before a resume)
        self.restored_scores: dict[str, float] = {}
        self._bicubic_crops: dict[str, torch.Tensor] = {}
        self._panels: list[tuple[str, torch.Tensor]] = []
        #: the ``torch.compile`` mode of the training step in this fit, None when it runs eagerly
        self.compile_mode: str | None = None
        #: how the training step ran in the last fit (``speed/fast_path`` of ``metrics.json``):
        #: ``compiled (<mode>)``, ``eager``, or ``eager (<why compiling failed>)``; None before a fit
        self.fast_path: str | None = None
        self._compiled_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
        #: the inputs of a compiled step until its backward has run (an eager recompute's inputs)
        self._step_inputs: tuple[torch.Tensor, torch.Tensor] | None = None
        #: dynamo's graph count at the last new graph, and compiled steps completed since then
        self._graphs, self._settled_steps = 0, 0

    # -- networks --------------------------------------------------------------------------------------
    @property
    def eval_net(self) -> nn.Module:
        """The network used for validation, test and export: the EMA copy when enabled."""
        return self.net_ema.module if self.net_ema is not None else self.net

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.eval_net(lr)

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        self.val_names = self._names(dm, "val_names", "val_dataloader")
        self.test_names = self._names(dm, "test_names", "test_dataloader")
        self.val_metrics = self._metric_dict(self.val_names)
        self.test_metrics = self._metric_dict(self.test_names)
        self.val_best = nn.ModuleDict({self._key(n): _persistent(PRIMARY.tracker()) for n in self.val_names})
        if stage == "fit":
            self._setup_compile()

    def _setup_compile(self) -> None:
        """Compile the training step (the network stays eager for evaluation, and the state dict keeps its
        names, so compiled and eager runs resume from each other's checkpoints)."""
        strategy = self.trainer.strategy
        self.compile_mode = compile_mode(
            self.hparams.get("compile", False), strategy.root_device.type, self.trainer.world_size
        )
        self._compiled_loss, self._step_inputs = None, None
        self.fast_path = "eager"
        if self.compile_mode is not None:
            self._compiled_loss = torch.compile(self._forward_loss, mode=self.compile_mode)
            self.fast_path = f"compiled ({self.compile_mode})"
            self._graphs, self._settled_steps = _graph_count(), 0
            log.info("training step compiled with torch.compile(mode=%r)", self.compile_mode)

    @staticmethod
    def _names(dm: Any, attr: str, hook: str) -> list[str]:
        names = list(getattr(dm, attr, None) or [])
        if not names and dm is not None and hasattr(dm, hook):
            names = [f"{hook.split('_')[0]}{i}" for i in range(len(getattr(dm, hook)()))]
        return names

    def _metric_dict(self, names: list[str]) -> nn.ModuleDict:
        """Per set: the network's and bicubic's :data:`~esrt_lit.metrics.METRICS`, reduced across processes
        at epoch end."""
        return nn.ModuleDict(
            {
                self._key(n): nn.ModuleDict(
                    {f"{prefix}{m.name}": m.build(self.scale) for prefix in ("", BICUBIC) for m in METRICS}
                )
                for n in names
            }
        )

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "_")

    # -- training --------------------------------------------------------------------------------------
    def _forward_loss(self, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """The training objective: the loss of the network's output for ``lr`` against ``hr``."""
        return self.loss_fn(self.net(lr).float(), hr.float())

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if (compiled := self._compiled_loss) is not None:
            loss = self._compiled_step(compiled, batch["lr"], batch["hr"])
        else:
            loss = self._forward_loss(batch["lr"], batch["hr"])
        if self._logging_step():
            # a host copy, once per logging step: logged GPU tensors are read back (a device sync) on
            # every later step by the progress bar, so only a CPU value is ever logged
            value = loss.detach().to("cpu")
            size = len(batch["lr"])
            self.log("train/loss", value, on_step=True, on_epoch=False, prog_bar=True, batch_size=size)
        return loss

    def _compiled_step(
        self,
        compiled: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        lr: torch.Tensor,
        hr: torch.Tensor,
    ) -> torch.Tensor:
        """The loss of the ``compiled`` step; the eager loss, and eager steps from then on, when compiling or
        capturing it failed (:meth:`_compile_failed`). The network's own errors propagate: the eager recompute
        raises them again before anything is said or changed."""
        torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs are done with
        try:
            loss = compiled(lr, hr)
        except Exception as err:
            if not self._compile_failed(err):
                raise
            loss = self._forward_loss(lr, hr)
            self._fall_back(err)
            return loss
        if (graphs := _graph_count()) != self._graphs:  # this call compiled a new graph
            self._graphs, self._settled_steps = graphs, 0
        self._step_inputs = (lr, hr)
        return loss

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """Backpropagate ``loss``. Within :data:`CAPTURE_STEPS` steps of a new graph (inductor lowers a
        graph's backward at its first backward, CUDA graphs capture it at the next ones), a compiled step
        whose backward fails to compile or capture gets back the gradients it had before (another graph of
        the step, past a graph break, may have added its own) and is recomputed eagerly and backpropagated."""
        inputs, self._step_inputs = self._step_inputs, None
        if inputs is None or self._settled_steps >= CAPTURE_STEPS:
            super().backward(loss, *args, **kwargs)
            return
        params = list(self.net.parameters())
        grads = [None if p.grad is None else p.grad.clone() for p in params]  # None unless accumulating
        try:
            super().backward(loss, *args, **kwargs)
        except Exception as err:
            if not self._compile_failed(err):
                raise
            for p, grad in zip(params, grads, strict=True):
                p.grad = grad
            super().backward(self._eager_closure_loss(*inputs), *args, **kwargs)
            self._fall_back(err)
            return
        self._settled_steps += 1

    def _eager_closure_loss(self, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """The eager loss of ``lr, hr`` as Lightning hands a step's loss to :meth:`backward`: computed under the
        precision plugin's autocast, divided by ``accumulate_grad_batches`` and scaled by its gradient scaler."""
        precision = self.trainer.precision_plugin
        with precision.train_step_context():
            loss = self._forward_loss(lr, hr) / self.trainer.accumulate_grad_batches
        scaler = getattr(precision, "scaler", None)
        return scaler.scale(loss) if scaler is not None else loss

    def _compile_failed(self, err: Exception) -> bool:
        """Whether ``err`` is the compiler's, not the network's: a dynamo or inductor exception (inductor's
        ``InductorError`` is dynamo's ``BackendCompilerFailed``; a network error seen while tracing reaches
        the caller as itself), or an out-of-memory error within :data:`CAPTURE_STEPS` steps of a new graph
        (CUDA graphs capture then). An error the eager recompute raises again is raised as the network's."""
        from torch._dynamo.exc import TorchDynamoException

        if isinstance(err, TorchDynamoException):
            return True
        return isinstance(err, torch.OutOfMemoryError) and self._settled_steps < CAPTURE_STEPS

    def _fall_back(self, err: Exception) -> None:
        """Run the training step eagerly from now on, and say why in one warning line."""
        reason = _first_line(err)
        self._compiled_loss, self._step_inputs = None, None
        self.fast_path = f"eager ({reason})"
        log.warning(
            "the compiled training step failed (%s); continuing eager from step %d with the same weights and "
            "optimizer state — set module.compile=false to skip compiling",
            reason,
            self.global_step,
        )

    def _logging_step(self) -> bool:
        """Whether Lightning's loggers write after this step (every ``trainer.log_every_n_steps`` steps, and
        every step of ``fast_dev_run``): the only steps whose loss is read back from the device."""
        trainer = self.trainer
        every = trainer.log_every_n_steps
        return bool(trainer.fast_dev_run) or (every > 0 and (self.global_step + 1) % every == 0)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.net_ema is not None:
            self.net_ema.update_parameters(self.net)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.net.parameters() if p.requires_grad]
        if not params:
            raise ValueError(
                f"{type(self.net).__name__} has no trainable parameters (model=bicubic cannot be trained; "
                "score it with `python -m esrt_lit.eval model=bicubic`)"
            )
        optimizer = self._fused_on_cuda(self.optimizer_factory)(params)
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": self.scheduler_factory(optimizer),
                "interval": self.hparams["scheduler_interval"],
                "frequency": 1,
                "name": "lr",  # LearningRateMonitor's metric name
            },
        }

    def _fused_on_cuda(
        self, factory: Callable[..., torch.optim.Optimizer]
    ) -> Callable[..., torch.optim.Optimizer]:
        """``factory`` with ``fused=True`` when training on CUDA and the optimizer's ``fused`` is left unset
        (``optimizer.fused: null``): one kernel per step instead of one per tensor group, and a skipped
        update on a non-finite loss without reading the loss back (:class:`~esrt_lit.training.callbacks.NonFiniteLossGuard`)."""
        if self._trainer is None or self.trainer.strategy.root_device.type != "cuda":
            return factory
        if not isinstance(factory, functools.partial) or factory.keywords.get("fused") is not None:
            return factory
        if "fused" not in inspect.signature(factory.func).parameters:
            return factory
        return functools.partial(factory, fused=True)

    # -- evaluation ------------------------------------------------------------------------------------
    def _super_resolve(self, batch: Mapping[str, Any]) -> torch.Tensor | None:
        """The clamped SR output of an evaluation batch; None for a padding item (a process without an
        image of this set, see :class:`~esrt_lit.data.datamodule.EvalDistributedSampler`)."""
        if bool(batch.get("pad", False)):
            return None
        try:
            return self.eval_net(batch["lr"]).float().clamp(0, 1)
        except ValueError as err:  # the network's input checks (too small an image): name the file
            raise ValueError(f"{batch.get('path', batch.get('name', ['?']))[0]}: {err}") from None

    def _score(self, entry: nn.ModuleDict, sr: torch.Tensor, hr: torch.Tensor, prefix: str = "") -> None:
        for metric in METRICS:
            entry[f"{prefix}{metric.name}"].update(sr, hr)

    def on_validation_epoch_start(self) -> None:
        self._panels = []

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        name = self.val_names[dataloader_idx]
        entry = self.val_metrics[self._key(name)]
        sr = self._super_resolve(batch)
        if sr is None:
            return
        self._score(entry, sr, batch["hr"])
        if name not in self.bicubic_scores["val"]:  # once per run: a constant reference line
            self._score(entry, self.bicubic(batch["lr"].float()).clamp(0, 1), batch["hr"], BICUBIC)
        if dataloader_idx == 0 and batch_idx < self.hparams["log_images"] and self.trainer.is_global_zero:
            image = str(batch.get("name", [f"image{batch_idx}"])[0])
            self._panels.append((image, self._panel(image, batch["lr"], sr, batch["hr"])))

    def _compute(self, entry: nn.ModuleDict, prefix: str = "") -> dict[str, float]:
        """Compute (synced across processes) and reset ``{prefix}<metric>`` of every metric."""
        values = {}
        for metric in METRICS:
            key = f"{prefix}{metric.name}"
            with warnings.catch_warnings():  # a set a rank saw no image of is fine: states are synced
                warnings.filterwarnings("ignore", message=".*compute.*before.*update.*")
                values[metric.name] = float(entry[key].compute())
            entry[key].reset()
        return values

    def _log_epoch(self, name: str, value: float) -> None:
        # torchmetrics already reduced the value across processes, so it is the same on every rank;
        # sync_dist (a mean of equal values) only tells Lightning so
        self.log(name, value, add_dataloader_idx=False, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        sanity = self.trainer.sanity_checking
        for name in self.val_names:
            entry = self.val_metrics[self._key(name)]
            scores = self._compute(entry)
            if name not in self.bicubic_scores["val"]:
                bicubic = self._compute(entry, BICUBIC)
                if not sanity and not math.isnan(bicubic[PRIMARY.name]):
                    self.bicubic_scores["val"][name] = bicubic
            if sanity or math.isnan(scores[PRIMARY.name]):
                continue
            # float64, the scores' precision: torchmetrics casts an update to the metric's dtype, which a
            # `.to(device)` (Lightning moving the module) resets to float32
            best = self.val_best[self._key(name)].set_dtype(torch.float64)
            best.update(scores[PRIMARY.name])
            scores[BEST] = float(best.compute())
            for metric, value in scores.items():
                self.scores[f"val/{name}/{metric}"] = value
                self._log_epoch(f"val/{name}/{metric}", value)
            if name in self.bicubic_scores["val"]:
                self._log_epoch(
                    f"val/{name}/{PRIMARY.name}_bicubic", self.bicubic_scores["val"][name][PRIMARY.name]
                )
        if not sanity:
            self._log_panels()
        self._panels = []

    def best_scores(self) -> dict[str, float]:
        """``val/<set>/psnr_best`` of the sets validated so far, this run or before a resume."""
        best = {}
        for name in self.val_names:
            value = float(getattr(self.val_best[self._key(name)], PRIMARY.tracker_state))
            if math.isfinite(value):
                best[f"val/{name}/{BEST}"] = value
        return best

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["val_scores"] = {
            k: v for k, v in self.scores.items() if k.startswith("val/") and not k.endswith(f"/{BEST}")
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the last validation's scores, and fit the best-PSNR states to this run's validation sets
        (a set the checkpoint does not know starts afresh, one it knows but this run does not is dropped;
        checkpoints of earlier versions kept the best in ``val_scores``)."""
        scores = dict(checkpoint.get("val_scores", {}))
        self.restored_scores = {k: v for k, v in scores.items() if not k.endswith(f"/{BEST}")}
        state = checkpoint.get("state_dict", {})
        own = {f"val_best.{self._key(n)}.{PRIMARY.tracker_state}": n for n in self.val_names}
        for key in [k for k in state if k.startswith("val_best.") and k not in own]:
            del state[key]
        for key, name in own.items():
            if key not in state:
                state[key] = torch.tensor(
                    float(
                        scores.get(f"val/{name}/{BEST}", -math.inf if PRIMARY.higher_is_better else math.inf)
                    ),
                    dtype=torch.float64,
                )

    def test_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        entry = self.test_metrics[self._key(self.test_names[dataloader_idx])]
        sr = self._super_resolve(batch)
        if sr is None:
            return
        self._score(entry, sr, batch["hr"])
        self._score(entry, self.bicubic(batch["lr"].float()).clamp(0, 1), batch["hr"], BICUBIC)

    def on_test_epoch_end(self) -> None:
        for name in self.test_names:
            entry = self.test_metrics[self._key(name)]
            scores = self._compute(entry)
            self.bicubic_scores["test"][name] = self._compute(entry, BICUBIC)
            for metric, value in scores.items():
                self.scores[f"test/{name}/{metric}"] = value
                self._log_epoch(f"test/{name}/{metric}", value)
            self._log_epoch(
                f"test/{name}/{PRIMARY.name}_bicubic", self.bicubic_scores["test"][name][PRIMARY.name]
            )

    # -- images ------------------------------------------------------------------------------------------
    def _panel(self, image: str, lr: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """``bicubic | network | ground truth`` of a centred crop, ``[3, c·s, 3·c·s + 4]`` in [0, 1]."""
        s, c = self.scale, self.hparams["image_crop"]
        h, w = lr.shape[-2:]
        ch, cw = min(c, h), min(c, w)
        top, left = (h - ch) // 2, (w - cw) // 2
        window = (slice(None), slice(None), slice(top * s, (top + ch) * s), slice(left * s, (left + cw) * s))
        if image not in self._bicubic_crops:
            self._bicubic_crops[image] = self.bicubic(lr.float()).clamp(0, 1)[window][0].cpu()
        tiles = [self._bicubic_crops[image], sr[window][0].cpu(), hr[window][0].float().cpu()]
        tiles = [t.expand(3, -1, -1) if t.shape[0] == 1 else t for t in tiles]
        gap = torch.ones(3, tiles[0].shape[1], 2)
        return torch.cat([tiles[0], gap, tiles[1], gap, tiles[2]], dim=-1)

    def _log_panels(self) -> None:
        if not self._panels or not self.trainer.is_global_zero:
            return
        name = self.val_names[0]
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(
                    key=f"val/{name}/samples",
                    images=[p for _, p in self._panels],
                    caption=[
                        f"{img}: bicubic | {type(self.net).__name__} | ground truth"
                        for img, _ in self._panels
                    ],
                    step=self.global_step,
                )
            elif isinstance(logger, TensorBoardLogger):
                for img, panel in self._panels:
                    logger.experiment.add_image(f"val/{name}/{img}", panel, self.global_step)
