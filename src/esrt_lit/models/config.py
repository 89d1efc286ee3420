"""ESRT's knobs: their defaults (the released network), types and ranges, in one dataclass.

:class:`ESRTConfig` is the schema of the network: :class:`~esrt_lit.models.esrt.ESRT` validates its
constructor arguments through it, and a checkpoint's recorded network is read through
:meth:`ESRTConfig.from_checkpoint`, which accepts plain values of the known knobs only (never a
``_target_`` or any other key, nested or not), so nothing a checkpoint holds is imported or called.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

__all__ = [
    "ATTENTIONS",
    "NETWORK_TARGETS",
    "SCALES",
    "AttentionImpl",
    "ESRTConfig",
    "check_attention",
    "check_scale",
]

#: The SR factors ESRT is built for (the paper's x2, x3, x4).
SCALES = (2, 3, 4)
#: EMHA implementations: fused scaled-dot-product attention, or softmax(QKᵀ)V written out as released.
ATTENTIONS = ("sdpa", "explicit")
AttentionImpl = Literal["sdpa", "explicit"]
#: The ``_target_`` spellings under which this project's training records its network (``conf/model``
#: writes ``esrt_lit.models.ESRT``; :func:`~esrt_lit.training.module.describe_net` the defining module).
NETWORK_TARGETS = ("esrt_lit.models.ESRT", "esrt_lit.models.esrt.ESRT")


def check_scale(value: Any, key: str = "scale") -> int:
    """``value`` as an SR factor of :data:`SCALES`.

    Raises:
        ValueError: another value, naming ``key``.
    """
    if isinstance(value, bool) or value not in SCALES:
        raise ValueError(f"{key}={value!r} is not supported; allowed values: {', '.join(map(str, SCALES))}")
    return int(value)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid; expected an integer >= {minimum}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is invalid; expected true or false")


def check_attention(attention: Any) -> None:
    """Raise ValueError unless ``attention`` is one of :data:`ATTENTIONS`."""
    if attention not in ATTENTIONS:
        raise ValueError(f"attention={attention!r} is not supported; allowed values: {', '.join(ATTENTIONS)}")


@dataclass(frozen=True)
class ESRTConfig:
    """The knobs of ESRT (Sec. 3, Fig. 2); the defaults are the released network, each knob one of
    the paper's ablations.

    Args:
        scale: upscaling factor, 2, 3 or 4.
        n_feats: feature width (32); must be even (the residual units halve it).
        n_hpb: number of HPBs in the LCB (3).
        n_et: number of ETs in the LTB (1); 0 removes the transformer.
        et_heads: EMHA heads (8); must divide the attention width ``9·n_feats/2``.
        attn_splits: token chunks of the EMHA feature split (4).
        mlp_ratio: ET MLP hidden width over token width (0.25, i.e. 288 → 72).
        rsa: learnable adaptive residual scales (True); False fixes them to 1.
        hfm: the HPB's high-frequency filtering branch (True).
        low_repeats: passes of the shared low-frequency ARFB in each HPB (5).
        attention: ``"sdpa"`` (fused, default) or ``"explicit"`` (as released); the same function.

    Raises:
        ValueError: a knob outside its allowed values, naming the knob.
    """

    scale: int = 4
    n_feats: int = 32
    n_hpb: int = 3
    n_et: int = 1
    et_heads: int = 8
    attn_splits: int = 4
    mlp_ratio: float = 0.25
    rsa: bool = True
    hfm: bool = True
    low_repeats: int = 5
    attention: AttentionImpl = "sdpa"

    def __post_init__(self) -> None:
        check_scale(self.scale)
        _check_int("n_feats", self.n_feats, 2)
        if self.n_feats % 2:
            raise ValueError(
                f"n_feats={self.n_feats} is invalid; expected an even integer (residual units halve it)"
            )
        _check_int("n_hpb", self.n_hpb, 1)
        _check_int("n_et", self.n_et, 0)
        _check_int("et_heads", self.et_heads, 1)
        _check_int("attn_splits", self.attn_splits, 1)
        _check_int("low_repeats", self.low_repeats, 1)
        ratio = self.mlp_ratio
        if (
            isinstance(ratio, bool)
            or not isinstance(ratio, (int, float))
            or not math.isfinite(ratio)
            or int(9 * self.n_feats * ratio) < 1
        ):
            raise ValueError(
                f"mlp_ratio={ratio!r} is invalid; expected a number with 9·n_feats·mlp_ratio >= 1"
            )
        width = self.attention_width
        if width % self.et_heads:
            allowed = [h for h in range(1, width + 1) if width % h == 0]
            raise ValueError(
                f"et_heads={self.et_heads} does not divide the attention width {width} (9·n_feats/2); "
                f"allowed values: {allowed}"
            )
        check_attention(self.attention)
        _check_bool("rsa", self.rsa)
        _check_bool("hfm", self.hfm)

    @property
    def attention_width(self) -> int:
        """The EMHA's token width ``9·n_feats/2`` (a 3×3 unfold of the reduced features)."""
        return 9 * self.n_feats // 2

    def as_dict(self) -> dict[str, Any]:
        """The knobs as a plain dict, in declaration order (what checkpoints record)."""
        return asdict(self)

    @classmethod
    def knobs(cls) -> tuple[str, ...]:
        """The knob names."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_checkpoint(cls, recorded: Any, source: str) -> ESRTConfig:
        """The configuration a checkpoint records as its ``net`` (``{"_target_": ..., **knobs}``), read as
        data: the ``_target_`` must name this project's ESRT (:data:`NETWORK_TARGETS`), every other key
        must be a knob with a plain value of its type; ranges are checked as for the constructor.

        Raises:
            ValueError: naming ``source`` and the offending key, before anything is built.
        """
        if not isinstance(recorded, Mapping):
            raise ValueError(
                f"{source}: its 'net' hyper-parameter is {type(recorded).__name__}; expected a mapping"
            )
        target = recorded.get("_target_")
        if target not in NETWORK_TARGETS:
            raise ValueError(
                f"{source}: its network _target_={target!r} is not one of this project's networks "
                f"({', '.join(NETWORK_TARGETS)}); checkpoints rebuild esrt-lit's own networks only and nothing "
                "in them is imported or called"
            )
        knobs = {k: v for k, v in recorded.items() if k != "_target_"}
        known = cls.knobs()
        for key, value in knobs.items():
            if key not in known:
                near = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean {near[0]}?)" if near else ""
                raise ValueError(
                    f"{source}: its network records an unknown knob {key!r}{hint}; known knobs: {', '.join(known)}"
                )
            if not isinstance(value, (bool, int, float, str)):
                raise ValueError(
                    f"{source}: its network knob {key}= holds a {type(value).__name__}; expected a plain "
                    f"{'number' if key != 'attention' else 'string'}"
                )
        try:
            return cls(**knobs)
        except ValueError as err:
            raise ValueError(f"{source}: its network knobs are invalid: {err}") from None
