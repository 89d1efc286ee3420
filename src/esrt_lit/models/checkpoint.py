"""Checkpoints: the project's one ``torch.load``, the shipped weights and :func:`load_network`, the one
entry point every command resolves its network through.

:func:`load_network` takes a network source and recognises a file's kind from its content (not the suffix):

* ``bicubic``: the parameter-free baseline (:class:`~esrt_lit.models.bicubic.Bicubic`) at ``scale``;
* the weights shipped with the package, by name (``pretrained:x4``, :data:`PRETRAINED`): fp16 state dicts
  trained by esrt-lit itself (the authors released none), about 1.5 MB each in ``esrt_lit/models/weights/``
  with their provenance beside them (``esrt_<name>.json``: the command, the resolved configuration, the
  commit, the W&B run's summary, Set5/Set14 scores against bicubic), their SHA-256 checked on every load;
  short-budget weights trained in hours on a CPU, not the paper's (``docs/training.md``, "Pretrained
  weights");
* a checkpoint of ``esrt_lit.train`` (Lightning): the network is rebuilt from its ``net``
  hyper-parameter, read as data through :meth:`ESRTConfig.from_checkpoint` (this project's ESRT and
  plain values of its known knobs only: nothing a checkpoint holds is imported or called), with the
  EMA weights when it has them;
* weights of the authors' released code, wrapped in ``state_dict``/``model`` or not, with or without
  DataParallel's ``module.`` prefix (:func:`~esrt_lit.models.official.from_official`);
* a state dict of this port's :class:`~esrt_lit.models.ESRT` (``torch.save(net.state_dict())``): the
  architecture is read off the tensors (features, HPBs, ETs, MLP width, RSA, HFM, scale; the heads,
  splits and low-frequency repeats, which no tensor shows, are the released ones unless given);
* a network object, used as it is.

Files are read with ``weights_only=True`` (:func:`read_checkpoint`): tensors and plain containers, never
pickled code; a file that holds anything else is refused, and the message says what was expected instead
of suggesting to load it unsafely. Every failure is a :class:`CheckpointError` (or ``FileNotFoundError``)
naming the file; a network that does not fit is described by the knobs that differ, not by key lists.
Weights holding NaN or infinity are refused, naming the first such tensor.
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from esrt_lit.errors import CheckpointError, ConfigError
from esrt_lit.files import sha256
from esrt_lit.models.bicubic import Bicubic
from esrt_lit.models.config import ESRTConfig
from esrt_lit.models.esrt import ESRT
from esrt_lit.models.official import from_official, unwrap_state_dict

__all__ = [
    "BICUBIC",
    "CHECKPOINT_SUFFIXES",
    "EMA_PREFIX",
    "EXPECTED",
    "NET_PREFIX",
    "PREFIX",
    "PRETRAINED",
    "CheckpointError",
    "Pretrained",
    "check_finite",
    "checkpoint_network_config",
    "describe_weights",
    "infer_esrt_config",
    "is_network_source",
    "knob_differences",
    "load_network",
    "network_source",
    "pretrained_path",
    "pretrained_state",
    "provenance",
    "read_checkpoint",
]

log = logging.getLogger(__name__)

#: The network source of the parameter-free bicubic baseline.
BICUBIC = "bicubic"

#: What a checkpoint path may hold, for messages.
EXPECTED = (
    "a checkpoint of esrt_lit.train (.ckpt), weights of the released ESRT code (.pth) or an ESRT state dict"
)


def _why_unreadable(path: Path, err: BaseException) -> str:
    """What is wrong with a file torch cannot load, without torch's advice (which suggests loading it
    with ``weights_only=False``)."""
    if path.stat().st_size == 0:
        return "the file is empty"
    if zipfile.is_zipfile(path):
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        return f"a damaged archive: {first}" if "weights_only" not in first else "a damaged archive"
    return "neither a PyTorch archive nor a pickle of tensors"


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: a folder, not a PyTorch file, or a file holding pickled objects.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; expected a checkpoint file: {EXPECTED}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, KeyError, ... here
        if found := re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err)):
            raise CheckpointError(
                f"{path}: holds pickled Python objects ({found.group(1)}), which loading with weights_only=True "
                f"refuses; expected {EXPECTED}, made of tensors and plain containers"
            ) from None
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint ({_why_unreadable(path, err)}); expected {EXPECTED}"
        ) from None


#: How a checkpoint path names shipped weights: ``pretrained:x4``.
PREFIX = "pretrained:"


@dataclass(frozen=True)
class Pretrained:
    """One set of shipped weights.

    Attributes:
        file: the state dict's file name in ``esrt_lit/models/weights/``.
        sha256: its SHA-256.
        config: the ESRT constructor arguments the weights fit.
    """

    file: str
    sha256: str
    config: dict[str, Any]

    @property
    def scale(self) -> int:
        return int(self.config["scale"])


#: The shipped weights by name: the released network (:class:`ESRTConfig`'s defaults), trained by ``experiment=pretrained_<name>``.
PRETRAINED: dict[str, Pretrained] = {
    "x2": Pretrained(
        "esrt_x2.pt",
        "2c020ccaec5f5ef2087acd75bb2c3741f23296f7d213f23235f1da91d2f7c298",
        ESRTConfig(scale=2).as_dict(),
    ),
    "x4": Pretrained(
        "esrt_x4.pt",
        "bf38402cdb1c6306a0be9dd68aecc75b494a4b449db8b29b8e80cd7b71dc578c",
        ESRTConfig(scale=4).as_dict(),
    ),
}


def _folder() -> Path:
    return Path(str(resources.files("esrt_lit.models") / "weights"))


def _entry(name: str) -> Pretrained:
    name = name.removeprefix(PREFIX)
    if name not in PRETRAINED:
        shipped = ", ".join(f"{PREFIX}{n}" for n in PRETRAINED) or "none"
        raise CheckpointError(f"{PREFIX}{name}: no such shipped weights; shipped: {shipped}")
    return PRETRAINED[name]


def pretrained_path(name: str) -> Path:
    """The file of the shipped weights ``name`` (``x4`` or ``pretrained:x4``), its SHA-256 checked.

    Raises:
        CheckpointError: unknown name, or a file missing or not the one shipped (its checksum differs).
    """
    entry = _entry(name)
    path = _folder() / entry.file
    if not path.is_file():
        raise CheckpointError(
            f"{PREFIX}{name.removeprefix(PREFIX)}: {path} is missing from the installed package"
        )
    digest = sha256(path)
    if digest != entry.sha256:
        raise CheckpointError(
            f"{path}: SHA-256 {digest} is not the shipped {entry.sha256}; the file was changed or damaged "
            "(reinstall esrt-lit)"
        )
    return path


def pretrained_state(name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(float32 state dict, ESRT config)`` of the shipped weights ``name`` (checksum checked)."""
    state = read_checkpoint(pretrained_path(name))
    return {k: v.float() for k, v in state.items()}, dict(_entry(name).config)


def provenance(name: str) -> dict[str, Any]:
    """How the shipped weights ``name`` were made (their ``.json`` beside them)."""
    entry = _entry(name)
    return json.loads((_folder() / entry.file).with_suffix(".json").read_text())


#: Where :class:`~esrt_lit.training.module.SRLitModule` keeps the trained and the EMA weights in its state dict.
NET_PREFIX = "net."
EMA_PREFIX = "net_ema.module."
#: Suffixes of checkpoint files (the content decides the kind; the suffix tells a path from a typo).
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")
#: Knobs no tensor of a state dict shows: taken as released unless given.
_INVISIBLE = ("et_heads", "attn_splits", "low_repeats", "attention")


def is_network_source(value: Any) -> bool:
    """Whether ``value`` names a checkpoint :func:`load_network` can try: shipped weights
    (``pretrained:x4``) or a checkpoint file's path."""
    if str(value).startswith(PREFIX):
        return True
    path = Path(str(value)).expanduser()
    return path.suffix.lower() in CHECKPOINT_SUFFIXES or path.is_file()


def checkpoint_network_config(content: Any, source: str) -> dict[str, Any] | None:
    """The ``net`` hyper-parameter (``{"_target_": ..., **knobs}``) of an ``esrt_lit.train`` checkpoint,
    validated as data by :meth:`ESRTConfig.from_checkpoint`; None for other content.

    Raises:
        CheckpointError: the recorded network is not this project's ESRT with valid knobs (naming
            ``source`` and the key), before anything is built.
    """
    if not isinstance(content, Mapping) or "state_dict" not in content:
        return None
    hparams = content.get("hyper_parameters")
    config = hparams.get("net") if isinstance(hparams, Mapping) else None
    if config is None:
        return None
    try:
        knobs = ESRTConfig.from_checkpoint(config, source)
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    return {"_target_": config["_target_"], **knobs.as_dict()}


def check_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` naming ``source`` and the first entry that is not a tensor or
    holds NaN or infinity."""
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(
                f"{source}: weight {name!r} is a {type(tensor).__name__}; expected a tensor"
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"{source}: tensor {name!r} holds NaN or infinite values; these weights cannot upscale "
                "(a diverged run? take an earlier checkpoint)"
            )


def infer_esrt_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The ESRT knobs a state dict under this port's names shows (see the module docstring).

    Raises:
        ValueError: not an ESRT state dict.
    """
    if "sfe.weight" not in state or "ir.up.0.weight" not in state:
        raise ValueError("not an ESRT state dict (no 'sfe.weight' or 'ir.up.0.weight')")
    n_feats = int(state["sfe.weight"].shape[0])
    up = state["ir.up.0.weight"].shape[0]
    scale = 3 if up == 9 * n_feats else 4 if "ir.up.2.weight" in state else 2
    n_hpb = len({m.group(1) for k in state if (m := re.match(r"lcb\.hpbs\.(\d+)\.", k))})
    n_et = len({m.group(1) for k in state if (m := re.match(r"ltb\.ets\.(\d+)\.", k))})
    fc1 = state.get("ltb.ets.0.mlp.fc1.weight")
    mlp_ratio = 0.25
    if fc1 is not None:  # a ratio whose int(9·n_feats·ratio) gives back the hidden width
        hidden, dim = int(fc1.shape[0]), 9 * n_feats
        mlp_ratio = hidden / dim if int(dim * (hidden / dim)) == hidden else (hidden + 0.5) / dim
    return {
        "scale": scale,
        "n_feats": n_feats,
        "n_hpb": n_hpb,
        "n_et": n_et,
        "mlp_ratio": mlp_ratio,
        "rsa": "skip_scale.scale" in state,
        "hfm": any(".arfb_high." in k for k in state),
    }


def knob_differences(have: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    """``knob: checkpoint X, asked Y`` for each knob both mappings give a different value."""
    return [
        f"{k}: checkpoint {have[k]!r}, asked {want[k]!r}"
        for k in want
        if k in have and k != "_target_" and have[k] != want[k]
    ]


def _check_scale(net: nn.Module, scale: int | None, source: str) -> nn.Module:
    net_scale = getattr(net, "scale", None)
    if scale is not None and net_scale is not None and int(scale) != int(net_scale):
        raise CheckpointError(f"scale={scale} was asked for but {source} holds an x{net_scale} network")
    return net


def _load_strict(net: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """``net.load_state_dict(state, strict=True)``; a mismatch is a :class:`CheckpointError` saying ``what``."""
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{what}: {str(err).splitlines()[0]}") from None


def _from_training(
    content: Mapping[str, Any], config: dict[str, Any], source: str, prefer_ema: bool
) -> nn.Module:
    net = ESRT(**{k: v for k, v in config.items() if k != "_target_"})
    state = content["state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{source}: its 'state_dict' is a {type(state).__name__}; expected tensors by name"
        )
    prefix = EMA_PREFIX if prefer_ema and any(k.startswith(EMA_PREFIX) for k in state) else NET_PREFIX
    weights = {
        k[len(prefix) :].replace("_orig_mod.", ""): v for k, v in state.items() if k.startswith(prefix)
    }
    check_finite(weights, source)
    _load_strict(net, weights, f"{source}: its '{prefix}' weights do not fit {config['_target_']}")
    log.info(
        "loaded %s (%s weights) from %s",
        type(net).__name__,
        "EMA" if prefix == EMA_PREFIX else "trained",
        source,
    )
    return net


def _from_port_state(state: Mapping[str, torch.Tensor], source: str, knobs: Mapping[str, Any]) -> ESRT:
    inferred = infer_esrt_config(state)
    differing = knob_differences(inferred, {k: v for k, v in knobs.items() if k not in _INVISIBLE})
    if differing:
        raise CheckpointError(f"{source} holds another ESRT: {'; '.join(differing)}")
    try:
        net = ESRT(**{**{k: v for k, v in knobs.items() if k in _INVISIBLE}, **inferred})
    except ValueError as err:
        raise CheckpointError(
            f"{source}: a state dict of an ESRT with {inferred}, whose heads, splits and low-frequency repeats "
            f"no tensor shows, and the released ones do not fit it ({err}); save it from esrt_lit.train (a .ckpt "
            "holds every knob)"
        ) from None
    _load_strict(net, state, f"{source}: the tensors do not fit ESRT({inferred})")
    return net


def _from_pretrained(name: str) -> ESRT:
    """The shipped weights ``name`` (``pretrained:x4``; their SHA-256 checked) in their network."""
    state, config = pretrained_state(name)
    net = ESRT(**config)
    net.load_state_dict(state)
    return net


def network_source(
    ckpt_path: str | None, bicubic: bool, scale: int | None = None, shipped: bool = False
) -> str:
    """The network source a command's configuration names, for :func:`load_network`: ``ckpt_path``, or
    ``bicubic`` (``model=bicubic``); with neither, ``shipped`` takes the shipped weights of ``scale``
    (4 by default).

    Raises:
        ConfigError: both given, neither (without ``shipped``), or a ``scale`` with no shipped weights.
    """
    if ckpt_path:
        if bicubic:
            raise ConfigError(f"ckpt_path={ckpt_path} and model=bicubic: give one of them")
        return str(ckpt_path)
    if bicubic:
        return BICUBIC
    if shipped:
        scale = scale or 4
        if f"x{scale}" not in PRETRAINED:
            raise ConfigError(
                f"scale={scale}: no weights ship for x{scale} (shipped: {', '.join(PRETRAINED)}); give "
                f"ckpt_path=<an x{scale} checkpoint> (train one: python -m esrt_lit.train "
                f"experiment=pretrained_x{scale}) or model=bicubic"
            )
        return f"{PREFIX}x{scale}"
    raise ConfigError(
        "nothing to run: give ckpt_path=<checkpoint> (a .ckpt of esrt_lit.train, released ESRT weights or a "
        "state dict) or model=bicubic"
    )


def load_network(
    source: str | Path | nn.Module,
    scale: int | None = None,
    prefer_ema: bool = True,
    key: str | None = None,
    **knobs: Any,
) -> nn.Module:
    """The network ``source`` names, in eval mode (on the CPU when read from a file); see the module docstring.

    Args:
        source: a checkpoint's path, shipped weights' name (``pretrained:x4``), ``bicubic``, or a network.
        scale: when given, the network's scale must be this one (``bicubic`` needs it).
        prefer_ema: take the EMA weights of a training checkpoint when it has them.
        key: the option ``source`` came from (``ckpt_path``, ``--ckpt``); errors then start with
            ``<key>=<source>:``.
        **knobs: ESRT knobs for state dicts, where tensors do not show them (``et_heads``,
            ``attn_splits``, ``low_repeats``, ``attention``); a visible one must agree.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, not a network checkpoint, a network of another scale or shape.
        ValueError: ``source`` names nothing loadable, or ``bicubic`` without a scale.
    """
    if isinstance(source, nn.Module):
        return _check_scale(source, scale, type(source).__name__).eval()
    name = str(source)
    if key is None:
        return _load(name, scale, prefer_ema, knobs)
    try:
        return _load(name, scale, prefer_ema, knobs)
    except (FileNotFoundError, ValueError) as err:  # the loader names the file; this names the option too
        raise type(err)(f"{key}={name}: {str(err).removeprefix(f'{name}: ')}") from None


def _load(name: str, scale: int | None, prefer_ema: bool, knobs: Mapping[str, Any]) -> nn.Module:
    if name == BICUBIC:
        if scale is None:
            raise ConfigError("bicubic upscales by a given scale: give scale=2, 3 or 4")
        return Bicubic(scale).eval()
    if name.startswith(PREFIX):
        return _check_scale(_from_pretrained(name), scale, name).eval()
    if not is_network_source(name):
        raise ValueError(
            f"{name!r}: expected 'bicubic', an nn.Module, or a checkpoint (a .ckpt/.pt/.pth file or a shipped "
            "name such as pretrained:x4)"
        )
    path = Path(name).expanduser()
    content = read_checkpoint(path)
    if (config := checkpoint_network_config(content, name)) is not None:
        net = _from_training(content, config, name, prefer_ema)
    elif isinstance(content, Mapping) and "state_dict" in content and "hyper_parameters" in content:
        raise CheckpointError(
            f"{name}: a Lightning checkpoint with no 'net' hyper-parameter (not written by esrt_lit.train); "
            f"expected {EXPECTED}"
        )
    else:
        try:
            state = unwrap_state_dict(content, name)
        except ValueError:
            state = {}
        if not state:
            raise CheckpointError(f"{name}: holds no tensors of a network; expected {EXPECTED}")
        check_finite(state, name)
        if "sfe.weight" in state:
            net = _from_port_state(state, name, knobs if scale is None else {**knobs, "scale": scale})
        elif "head.0.weight" in state:
            try:
                net = from_official(state, name, **knobs)
            except ValueError as err:
                raise CheckpointError(f"{name}: {err}") from None
        else:
            sample = ", ".join(list(state)[:3])
            raise CheckpointError(
                f"{name}: tensors of an unknown network (keys {sample}, ...); expected {EXPECTED}"
            )
    return _check_scale(net, scale, name).eval()


def describe_weights(ckpt_path: str) -> str:
    """One line naming the weights of ``ckpt_path``; for shipped weights (``pretrained:x2``) with their
    provenance: file, SHA-256, the training recipe and steps, Set5/Set14 PSNR against bicubic."""
    if not str(ckpt_path).startswith(PREFIX):
        return f"ckpt_path={ckpt_path}"
    from esrt_lit.metrics.collection import PRIMARY  # torchmetrics, only for shipped weights

    info: dict[str, Any] = provenance(ckpt_path)
    scores, bicubic = info.get("scores", {}), info.get("bicubic", {})
    sets = [n for n in ("Set5", "Set14") if n in scores and n in bicubic]
    psnr = ", ".join(
        f"{n} {scores[n][PRIMARY.name]:.2f} dB (bicubic {bicubic[n][PRIMARY.name]:.2f})" for n in sets
    )
    recipe = re.search(r"experiment=\S+", info.get("command", ""))
    steps = info.get("run", {}).get("global_step")
    made = f"trained by {recipe.group() if recipe else info.get('command')}" + (
        f", {steps} steps" if steps else ""
    )
    return f"shipped {ckpt_path} ({info['file']}, sha256 {info['sha256'][:12]}): {made}; {psnr}"
