"""Conversion between this port's parameter names and those of the authors' released ESRT code
(github.com/luissen/ESRT, ``model/esrt.py``: ``one_conv``, ``one_module``, ``Updownblock``, ``Un``,
``MLABlock``), in the spirit of timm's ``checkpoint_filter_fn``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from esrt_lit.models.arfb import ARFB, ResidualUnit
from esrt_lit.models.config import ESRTConfig
from esrt_lit.models.esrt import ESRT
from esrt_lit.models.hpb import HPB, LCB
from esrt_lit.models.layers import ChannelAttention, Scale
from esrt_lit.models.transformer import LTB, EfficientTransformer

# Child path in this port -> path in the released code, per module class. Unlisted children keep their name.
_RENAMES: dict[type[nn.Module], dict[str, str]] = {
    ResidualUnit: {
        "conv_down": "conv",
        "act": "relu",
        "conv_up": "conv1",
        "skip_scale": "weight1",
        "res_scale": "weight2",
    },
    ARFB: {
        "ru1": "layer1",
        "ru2": "layer2",
        "fuse": "alise",
        "ca": "atten",
        "conv": "layer4",
        "scale_b": "weight2",
        "scale_a": "weight3",
        "skip_scale": "weight4",
        "res_scale": "weight5",
    },
    ChannelAttention: {"reduce": "conv_du.0", "expand": "conv_du.2"},
    HPB: {
        "arfb_in": "encoder",
        "arfb_low": "decoder_low",
        "arfb_high": "decoder_high",
        "fuse": "alise2",
        "ca": "att",
        "arfb_out": "alise",
    },
    LCB: {"hpbs.0": "encoder1", "hpbs.1": "encoder2", "hpbs.2": "encoder3", "fuse": "reduce"},
    LTB: {"ets.0": "attention", "conv": "alise"},
    EfficientTransformer: {"attn": "atten"},
}
_TOP = {
    "sfe": "head.0",
    "lcb": "body.0",
    "ltb": "body.0",
    "skip_scale": "body.0.weight1",
    "body_scale": "body.0.weight2",
    "body_conv": "reduce",
    "ir.up": "tail.0",
    "ir.conv": "tail.1",
    "ir.skip_up": "up.0",
    "ir.skip_conv": "up.1",
}
_UNUSED = re.compile(r"(^|\.)(encoder|decoder_low|decoder_high|alise)\.weight1\.scale$")
#: The knobs the released code fixes (its defaults, :class:`ESRTConfig`'s): weights under the released
#: names exist only for these values. RSA off is written as scales of 1; the attention implementation
#: and the scale leave no trace in the names.
RELEASED_KNOBS = {k: v for k, v in ESRTConfig().as_dict().items() if k not in ("scale", "rsa", "attention")}


def official_name(model: nn.Module, name: str) -> str:
    """The released code's name for parameter/buffer/submodule path ``name`` of ``model``."""
    parts = name.split(".")
    out: list[str] = []
    module: nn.Module | None = model
    while parts:
        renames = _TOP if module is model else _RENAMES.get(type(module), {}) if module is not None else {}
        for ours in sorted(renames, key=lambda k: -k.count(".")):
            n = ours.count(".") + 1
            if parts[:n] == ours.split("."):
                out.append(renames[ours])
                module = module.get_submodule(ours)
                parts = parts[n:]
                break
        else:
            head, parts = parts[0], parts[1:]
            out.append(head)
            module = getattr(module, head, None) if isinstance(module, nn.Module) else None
            module = module if isinstance(module, nn.Module) else None
    return ".".join(out)


def _fixed_scales(model: nn.Module) -> list[str]:
    """Names of the Scale modules that hold no parameter (``rsa=False``)."""
    return [name for name, mod in model.named_modules() if isinstance(mod, Scale) and mod.scale is None]


def to_official(model: ESRT) -> dict[str, torch.Tensor]:
    """``model``'s weights under the released code's parameter names (strict-loadable there); the
    unused ARFB ``weight1`` scalars are filled with their initial value 1, and with ``rsa=False`` every
    fixed residual scale is written as 1.

    Raises:
        ValueError: a knob differs from the released architecture, which cannot hold the weights.
    """
    differing = {k: model.config[k] for k, v in RELEASED_KNOBS.items() if model.config[k] != v}
    if differing:
        raise ValueError(
            f"the released ESRT cannot hold these knobs: {differing}; released values: {RELEASED_KNOBS}"
        )
    state = {official_name(model, k): v.detach().clone() for k, v in model.state_dict().items()}
    ref = next(iter(state.values()))
    for name in _fixed_scales(model):
        state[official_name(model, name) + ".scale"] = torch.ones(1, dtype=ref.dtype, device=ref.device)
    for hpb_name in ("encoder1", "encoder2", "encoder3"):
        for arfb in ("encoder", "decoder_low", "decoder_high", "alise"):
            state[f"body.0.{hpb_name}.{arfb}.weight1.scale"] = torch.ones(
                1, dtype=ref.dtype, device=ref.device
            )
    return state


def unwrap_state_dict(checkpoint: Any, source: str = "state_dict") -> dict[str, torch.Tensor]:
    """The released-names tensors of a checkpoint's content: unwrapped from ``{"state_dict": ...}`` or
    ``{"model": ...}``, DataParallel's ``module.`` prefix and the unused ARFB ``weight1`` scalars removed.

    Raises:
        ValueError: not a mapping of tensors (names ``source``).
    """
    for key in ("state_dict", "model"):
        if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in checkpoint.values()
    ):
        raise ValueError(f"{source}: expected a state_dict of tensors under the released ESRT names")
    return {
        k.removeprefix("module."): v
        for k, v in checkpoint.items()
        if not _UNUSED.search(k.removeprefix("module."))
    }


def released_scale(state: Mapping[str, torch.Tensor], source: str = "state_dict") -> int:
    """The scale of released weights, read off the skip upsampler's shapes (``up.0.0.weight``).

    Raises:
        ValueError: no released upsampler, or shapes of no ESRT scale.
    """
    weight = state.get("up.0.0.weight")
    if weight is None:
        raise ValueError(
            f"{source}: cannot infer the scale: no 'up.0.0.weight' (the released upsampler); "
            "expected weights under the released ESRT names"
        )
    n_feats = weight.shape[1]
    if weight.shape[0] == 9 * n_feats:
        return 3
    if weight.shape[0] == 4 * n_feats:
        return 4 if "up.0.2.weight" in state else 2
    raise ValueError(f"{source}: cannot infer the scale from 'up.0.0.weight' of shape {tuple(weight.shape)}")


def checkpoint_filter_fn(
    state: Mapping[str, torch.Tensor], model: ESRT, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Released-names weights (see :func:`unwrap_state_dict`) renamed to ``model``'s own names, in the
    spirit of timm's ``checkpoint_filter_fn``: the result loads into ``model`` strictly.

    Raises:
        ValueError: one message listing every missing, unexpected or mis-shaped key, and fixed residual
            scales (``rsa=False``) that are not 1.
    """
    ours = model.state_dict()
    names = {official_name(model, k): k for k in ours}
    fixed = {official_name(model, n) + ".scale" for n in _fixed_scales(model)}
    missing = sorted(set(names) - set(state))
    unexpected = sorted(set(state) - set(names) - fixed)
    misshaped = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(ours[names[k]].shape)}"
        for k in sorted(set(names) & set(state))
        if state[k].shape != ours[names[k]].shape
    ]
    bad_fixed = [k for k in sorted(fixed & set(state)) if not torch.all(state[k] == 1)]
    if missing or unexpected or misshaped or bad_fixed:
        knobs = {k: v for k, v in model.config.items() if k != "scale" and RELEASED_KNOBS.get(k, v) != v}
        lines = [f"{source} does not match ESRT(scale={model.scale}, {knobs or 'released knobs'}):"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                lines.append(f"  {title} ({len(keys)}): " + ", ".join(keys))
        if bad_fixed:
            lines.append("  residual scales != 1 but rsa=False: " + ", ".join(bad_fixed))
        raise ValueError("\n".join(lines))
    return {names[k]: state[k] for k in names}


def from_official(state: Mapping[str, torch.Tensor], source: str = "state_dict", **knobs: Any) -> ESRT:
    """An ESRT holding released-names weights (see :func:`unwrap_state_dict`; the scale is read off the
    upsampler's shapes).

    Args:
        state: the released weights, wrapped in ``{"state_dict": ...}``/``{"model": ...}`` or not.
        source: what to name in errors (the file).
        **knobs: other constructor arguments (e.g. ``attention="explicit"``); ``scale``, if given,
            must agree with the weights.

    Raises:
        ValueError: not released ESRT weights, another scale, or one message listing every missing,
            unexpected or mis-shaped key.
    """
    state = unwrap_state_dict(state, source)
    scale = released_scale(state, source)
    if knobs.get("scale", scale) != scale:
        raise ValueError(f"scale={knobs['scale']} was asked for but the checkpoint is a x{scale} model")
    model = ESRT(**{**knobs, "scale": scale})
    model.load_state_dict(checkpoint_filter_fn(state, model, source))
    return model
