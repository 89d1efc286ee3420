"""Networks from checkpoints: the one loader behind every command that takes a checkpoint.

:func:`load_network` recognises the kind from the content (not the suffix):

* a checkpoint of ``esrt_lit.train`` (Lightning): the network is rebuilt from its ``net``
  hyper-parameter, read as data through :meth:`ESRTConfig.from_checkpoint` (this project's ESRT and
  plain values of its known knobs only: nothing a checkpoint holds is imported or called), with the
  EMA weights when it has them;
* weights of the authors' released code, wrapped in ``state_dict``/``model`` or not, with or without
  DataParallel's ``module.`` prefix (:func:`~esrt_lit.models.official.from_official`);
* the weights shipped with the package, by name (``pretrained:x4``, :mod:`esrt_lit.models.pretrained`);
* a state dict of this port's :class:`~esrt_lit.models.ESRT` (``torch.save(net.state_dict())``): the
  architecture is read off the tensors (features, HPBs, ETs, MLP width, RSA, HFM, scale; the heads,
  splits and low-frequency repeats, which no tensor shows, are the released ones unless given).

Every failure is a :class:`~esrt_lit.models.files.CheckpointError` (or ``FileNotFoundError``) naming
the file; a network that does not fit is described by the knobs that differ, not by key lists.
Weights holding NaN or infinity are refused, naming the first such tensor.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from esrt_lit.models.config import ESRTConfig
from esrt_lit.models.esrt import ESRT
from esrt_lit.models.files import EXPECTED, CheckpointError, read_checkpoint
from esrt_lit.models.official import from_official, unwrap_state_dict
from esrt_lit.models.pretrained import PREFIX, pretrained_state

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "EMA_PREFIX",
    "NET_PREFIX",
    "CheckpointError",
    "check_finite",
    "checkpoint_network_config",
    "infer_esrt_config",
    "is_network_source",
    "knob_differences",
    "load_network",
]

log = logging.getLogger(__name__)

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


def load_network(
    source: str | Path,
    scale: int | None = None,
    prefer_ema: bool = True,
    **knobs: Any,
) -> nn.Module:
    """The network of a checkpoint file, in eval mode on the CPU (see the module docstring).

    Args:
        source: the checkpoint's path, or shipped weights' name (``pretrained:x4``).
        scale: when given, the network's scale must be this one.
        prefer_ema: take the EMA weights of a training checkpoint when it has them.
        **knobs: ESRT knobs for state dicts, where tensors do not show them (``et_heads``,
            ``attn_splits``, ``low_repeats``, ``attention``); a visible one must agree.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, not a network checkpoint, a network of another scale or shape.
    """
    name = str(source)
    if name.startswith(PREFIX):
        return _check_scale(_from_pretrained(name), scale, name).eval()
    path = Path(source).expanduser()
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
