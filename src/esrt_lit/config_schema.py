"""The schema every command's configuration is checked against before anything is built.

Each command (train, eval, upscale, export) calls :func:`check_schema` first, so that a value of the
wrong type or range, or a key nothing reads, ends the command with one line naming the key, the value
and what was expected, before a network, a dataset or a file is touched. The type of a key comes from:

* a node with a ``_target_`` (``data``, ``model``, ``trainer``, ``optimizer``, each callback ...): the
  target's signature. Its type hints give each parameter's type (bool, int, float, str, paths,
  ``Literal`` choices, unions, lists and fixed-length tuples such as Adam's ``betas``); a key that is no
  parameter is refused with the nearest one, unless the target takes ``**kwargs``;
* any other key (``overwrite``, ``seed``, ``train``, ``extras.print_config`` ...): its default in the
  command's primary configuration composed without the command line's values, when that default is a
  boolean or a number: booleans take ``true`` or ``false`` only (``overwrite=no`` is the string ``'no'``,
  which Python reads as true), numbers stay numbers; a key the default configuration does not have
  (``+modle=esrt_tiny``) is refused with the nearest one;
* :data:`RANGES`: the ranges no signature shows; ``scale`` is one of the SR factors, and a group's own
  ``scale`` (``data.scale``, ``model.scale``, which follow ``${scale}``) must not contradict it.

"""

from __future__ import annotations

import difflib
import inspect
import os
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from enum import Enum
from pathlib import Path, PurePath
from typing import Any, Literal, TypeVar, get_args, get_origin

from omegaconf import DictConfig, ListConfig, OmegaConf

from esrt_lit.errors import ConfigError
from esrt_lit.paths import CONF_DIR

__all__ = ["RANGES", "check_schema"]

#: Ranges of integer keys that no signature shows: dotted key → (minimum, maximum or None).
RANGES: dict[str, tuple[int, int | None]] = {
    "seed": (0, 2**32 - 1),
    "data.seed": (0, 2**32 - 1),
    "trainer.accumulate_grad_batches": (1, None),
    "scheduler.step_size": (1, None),
}

_UNIONS = (typing.Union, types.UnionType)
_LISTS = (list, tuple, set, frozenset, Sequence)


def check_schema(cfg: DictConfig, config_name: str | None = None) -> None:
    """Check ``cfg`` against the schema (see the module docstring) before anything is built.

    Args:
        cfg: the composed configuration of a command.
        config_name: the primary configuration ``cfg`` was composed from outside a Hydra run (the
            compose API, as ``export`` does); None inside a Hydra run, whose primary configuration, group
            choices and command-line overrides are read from Hydra.

    Raises:
        ConfigError: one line naming the key, the value and the allowed values or what was expected.
    """
    overrides: list[Any] = []
    if config_name is None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.override_parser.overrides_parser import OverridesParser

        hydra_cfg = HydraConfig.get()
        config_name = str(hydra_cfg.job.config_name)
        overrides = OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task))
        groups = [str(g) for g in hydra_cfg.runtime.choices if not str(g).startswith("hydra")]
        # the user's own config folders (hydra.searchpath) hold group options the default must find too
        paths = ",".join(repr(str(p)) for p in hydra_cfg.searchpath)
        searchpath = [f"hydra.searchpath=[{paths}]"] if paths else []
    else:
        groups, searchpath = [], []
    typed = {o.key_or_group: o.input_line for o in overrides}
    group_choices = [o.input_line for o in overrides if o.key_or_group in groups]
    default = _default_config(config_name, group_choices + searchpath)
    _check_scale(cfg, default)
    _Walk(typed, groups).node(cfg, default, "")
    _check_group_scales(cfg)


def _default_config(config_name: str, group_overrides: list[str]) -> DictConfig:
    """The primary configuration with the same group choices and none of the command line's values."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside a Hydra run or an initialize_* block
        return compose(config_name, overrides=group_overrides)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name, overrides=group_overrides)


def _check_scale(cfg: DictConfig, default: DictConfig) -> None:
    """The top-level ``scale`` is an SR factor (or null where its default is: the checkpoint's scale)."""
    from esrt_lit.models.config import check_scale

    if "scale" not in cfg or OmegaConf.is_interpolation(cfg, "scale"):
        return
    if cfg.scale is not None or default.get("scale") is not None:
        try:
            check_scale(cfg.scale)
        except ValueError as err:
            raise ConfigError(str(err)) from None


def _check_group_scales(cfg: DictConfig) -> None:
    """A group's own ``scale`` (``data.scale``, ``model.scale``) is the top-level one when both are set."""
    scale = cfg.get("scale")
    for name, node in _children(cfg):
        own = dict(_children(node)).get("scale") if isinstance(node, DictConfig) else None
        if scale is not None and own is not None and own != scale:
            raise ConfigError(
                f"{name}.scale={own!r} contradicts scale={scale!r}: the data and the model take one SR "
                f"factor, the top-level one; set scale={own!r} instead of {name}.scale"
            )


def _is_target(value: Any) -> bool:
    return isinstance(value, DictConfig) and "_target_" in value


def _show(value: Any) -> str:
    """A value as the messages show it (strings quoted, containers as plain lists and dicts)."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    return repr(value)


def _children(node: DictConfig) -> Iterator[tuple[str, Any]]:
    """``(key, value)`` of the keys that hold a value to check: no Hydra key (``_target_``,
    ``_partial_`` ...), no interpolation (its target is checked where it lives), no missing value."""
    for key in node:
        key = str(key)
        if key.startswith("_") or OmegaConf.is_interpolation(node, key) or OmegaConf.is_missing(node, key):
            continue
        yield key, node[key]


def _keys(node: Any) -> list[str]:
    """The keys of a configuration node, those of missing values (``???``) included; [] for no node."""
    return [str(k) for k in node] if isinstance(node, DictConfig) else []


def _default_leaf(default: Any, key: str) -> Any:
    """The default of ``key`` in the default node, when it is a plain boolean or number (else None)."""
    if (
        key not in _keys(default)
        or OmegaConf.is_interpolation(default, key)
        or OmegaConf.is_missing(default, key)
    ):
        return None
    value = default[key]
    return value if isinstance(value, (bool, int, float)) else None


class _Walk:
    """One pass over a configuration beside its default (see :func:`check_schema`)."""

    def __init__(self, typed: dict[str, str], groups: list[str]) -> None:
        self.typed = typed  # dotted key → the override as typed
        self.groups = groups

    def node(self, node: DictConfig, default: Any, path: str) -> None:
        """Check ``node`` (at dotted ``path``) and everything under it."""
        if _is_target(node):
            self.target(node, default, path)
            return
        known = _keys(default)
        for key, value in _children(node):
            dotted = f"{path}.{key}" if path else key
            if dotted == "hydra":
                continue
            if key not in known and not _is_target(value):
                self.unknown(dotted, value, known)
            if isinstance(value, DictConfig):
                self.node(value, default.get(key) if key in known else None, dotted)
            elif not self.targets_in(value, dotted):
                self.leaf(path, key, value, _default_type(_default_leaf(default, key)))

    def target(self, node: DictConfig, default: Any, path: str) -> None:
        """Check a ``_target_`` node against its target's signature."""
        from hydra.utils import get_object

        try:
            target = get_object(str(node._target_))
            parameters = inspect.signature(target).parameters
        except Exception:  # not importable, or no signature to read: instantiation says what is wrong
            return
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        hints = _type_hints(target)
        for key, value in _children(node):
            dotted = f"{path}.{key}" if path else key
            if key not in parameters and not takes_any:
                near = difflib.get_close_matches(key, list(parameters), n=1)
                hint = (
                    f"did you mean {path}.{near[0]}?" if near else f"its parameters: {', '.join(parameters)}"
                )
                shown = self.typed.get(dotted, f"{dotted}={_show(value)}")
                raise ConfigError(f"{shown}: {node._target_} takes no parameter {key!r}; {hint}")
            if _is_target(value):
                self.node(value, None, dotted)
            elif not self.targets_in(value, dotted):
                self.leaf(path, key, value, hints.get(key, _default_type(_default_leaf(default, key))))

    def targets_in(self, value: Any, path: str) -> bool:
        """Walk the ``_target_`` nodes of a list (``trainer.plugins``, ``data.train``); whether it holds
        any. A plain mapping beside them (a data source's ``kind:`` short form) is left to what reads it."""
        if not isinstance(value, ListConfig) or not any(_is_target(item) for item in value):
            return False
        for i, item in enumerate(value):
            if _is_target(item):
                self.node(item, None, f"{path}[{i}]")
        return True

    def leaf(self, path: str, key: str, value: Any, expected: Any) -> None:
        """Check a value against its type (None: not known) and :data:`RANGES`."""
        where = f"{path}: {key}" if path else key
        if expected is not None and _matches(value, expected) is False:
            choices = _literal_values(expected)
            if choices is not None:
                raise ConfigError(f"{where}={_show(value)} is not supported; allowed values: {choices}")
            raise ConfigError(f"{where}={_show(value)} is invalid; expected {_describe(expected)}")
        span = RANGES.get(f"{path}.{key}" if path else key)
        if span is not None and isinstance(value, int) and not isinstance(value, bool):
            low, high = span
            if value < low or (high is not None and value > high):
                bound = f">= {low}" if high is None else f"from {low} to {high}"
                raise ConfigError(f"{where}={value} is invalid; expected an integer {bound}")

    def unknown(self, dotted: str, value: Any, known: list[str]) -> None:
        """Refuse a key nothing reads, with the nearest known key (and the group option it may mean)."""
        parent, _, key = dotted.rpartition(".")
        candidates = known if parent else [*known, *self.groups]
        picked = [
            g
            for g in self.groups
            if isinstance(value, str) and (Path(CONF_DIR) / g / f"{value}.yaml").is_file()
        ]
        near = difflib.get_close_matches(key, picked, n=1) or difflib.get_close_matches(key, candidates, n=1)
        shown = self.typed.get(dotted, f"{dotted}={_show(value)}")
        if not near:
            raise ConfigError(
                f"{shown}: nothing reads the key {dotted!r}; known keys: {', '.join(sorted(set(candidates)))}"
            )
        hint = f" ({near[0]}={value} picks a {near[0]} config)" if near[0] in picked else ""
        near_key = f"{parent}.{near[0]}" if parent else near[0]
        raise ConfigError(f"{shown}: nothing reads the key {dotted!r}; did you mean {near_key}?{hint}")


def _default_type(default: Any) -> Any:
    """The type a key takes from its default: a boolean's is bool, a number's the number or null."""
    if default is None:
        return None
    return bool if isinstance(default, bool) else type(default) | None


def _type_hints(target: Any) -> dict[str, Any]:
    """The parameter types of a class's constructor or a function ({} when they do not resolve)."""
    function = inspect.unwrap(target.__init__ if inspect.isclass(target) else target)
    try:
        return typing.get_type_hints(function)
    except Exception:  # annotations naming what only type checkers import: names are still checked
        return {}


def _all_same(results: list[bool | None]) -> bool | None:
    """All True → True; any False → False; else None (something could not be judged)."""
    return False if False in results else None if None in results else True


def _matches(value: Any, tp: Any) -> bool | None:
    """Whether a plain configuration value is of type ``tp``; None when the type cannot be judged."""
    origin = get_origin(tp)
    if tp is Any or isinstance(tp, TypeVar):
        return None
    if tp is type(None):
        return value is None
    if origin in _UNIONS:
        results = [_matches(value, member) for member in get_args(tp)]
        return True if True in results else None if None in results else False
    if origin is Literal:
        return any(type(value) is type(choice) and value == choice for choice in get_args(tp))
    if tp is bool:
        return isinstance(value, bool)
    if tp in (int, float):
        return isinstance(value, (int, float) if tp is float else int) and not isinstance(value, bool)
    if tp is str or (inspect.isclass(tp) and issubclass(tp, (PurePath, os.PathLike))):
        return isinstance(value, str)
    if inspect.isclass(tp) and issubclass(tp, Enum):
        return any(value in (m.value, m.name) for m in tp)
    container = origin or tp
    if inspect.isclass(container) and issubclass(container, _LISTS) and not issubclass(container, str):
        if not isinstance(value, (ListConfig, list)):
            return False
        args = get_args(tp)
        if container is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                return False
            return _all_same([_matches(v, a) for v, a in zip(value, args, strict=True)])
        return _all_same([_matches(v, args[0]) for v in value]) if args else True
    try:
        return isinstance(value, (DictConfig, dict) if container in (dict, Mapping) else container)
    except TypeError:  # a protocol or a generic that isinstance cannot test
        return None


def _literal_values(tp: Any) -> str | None:
    """``a, b, c`` when ``tp`` is a choice of literal values (optional or not), else None."""
    members = get_args(tp) if get_origin(tp) in _UNIONS else (tp,)
    members = tuple(m for m in members if m is not type(None))
    if not members or any(get_origin(m) is not Literal for m in members):
        return None
    return ", ".join(str(v) for m in members for v in get_args(m))


def _describe(tp: Any, plural: bool = False) -> str:
    """What a value of type ``tp`` is, for messages (``an integer``, ``a list of 2 numbers`` ...)."""
    words = _words(tp, plural)
    return words if words is not None else getattr(tp, "__name__", str(tp))


def _words(tp: Any, plural: bool) -> str | None:
    """:func:`_describe`'s words; None for a type no configuration value can have (a tensor ...)."""
    origin = get_origin(tp)
    if origin in _UNIONS:
        parts = [w for m in get_args(tp) if (w := _words(m, plural)) is not None]
        return " or ".join(dict.fromkeys(parts)) if parts else None
    if origin is Literal:
        return " or ".join(str(v) for v in get_args(tp))
    simple = {
        bool: ("true or false", "true/false values"),
        int: ("an integer", "integers"),
        float: ("a number", "numbers"),
        str: ("a string", "strings"),
        type(None): ("null", "nulls"),
    }
    if tp in simple:
        return simple[tp][plural]
    container = origin or tp
    if inspect.isclass(container) and issubclass(container, (PurePath, os.PathLike)):
        return simple[str][plural]
    if inspect.isclass(container) and issubclass(container, _LISTS) and not issubclass(container, str):
        args = get_args(tp)
        if container is tuple and args and args[-1] is not Ellipsis:
            kinds = dict.fromkeys(_describe(a, plural=True) for a in args)
            return f"a list of {len(args)} {' and '.join(kinds)}"
        return f"a list of {_describe(args[0], plural=True)}" if args else "a list"
    if container in (dict, Mapping):
        return "a mapping"
    return None
