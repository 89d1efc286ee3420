"""What ``conf/`` needs from Python, registered once before Hydra composes a config (:func:`register_configs`).

Two nodes of Hydra's config store, whose values have their one home in the code:

``model/esrt_released``
    ESRT with the released network's knobs (:class:`~esrt_lit.models.config.ESRTConfig`'s defaults);
    ``conf/model/esrt.yaml`` composes from it.
``optimizer/adam_released``
    the released recipe's optimiser (:data:`esrt_lit.training.released.OPTIMIZER`);
    ``conf/optimizer/adam.yaml`` composes from it.

The OmegaConf resolvers:

``${esrt.project_root:}``
    the project checkout (where ``conf/`` lives).
``${esrt.benchmark_root:DEFAULT}``
    the shared benchmark folder (:func:`esrt_lit.paths.benchmark_root`), else ``DEFAULT``.
``${esrt.shared_data:DEFAULT}``
    the shared ``data/`` folder beside the checkout, else ``DEFAULT``.
``${esrt.first:A,B}``
    the first of its arguments that is not null.
``${esrt.wandb_mode:}``
    ``$WANDB_MODE`` when set, else ``online`` when a W&B key is configured (``$WANDB_API_KEY`` or a
    netrc entry for the W&B host), else ``offline``: a run never waits for a login.
``${esrt.run_group:}``
    the W&B group: the sweep's name in a multirun, else null (single runs are not grouped).
``${esrt.run_name:PATH}``
    the run's name: in a multirun job its number and the swept overrides (``0:model.n_hpb=2``),
    else the name of the run folder ``PATH``.
``${esrt.hydra_subdir:RESUME_DIR,TIME}``
    Hydra's ``output_subdir``: ``.hydra``, or ``.hydra/resume_TIME`` for a run resumed in its folder.
``${esrt.run_id:PATH}``
    a stable W&B run id for a run folder, so that a run resumed in its own folder continues the
    same W&B run.
"""

from __future__ import annotations

import hashlib
import netrc
import os
import sys
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from esrt_lit.models.config import NETWORK_TARGETS, ESRTConfig
from esrt_lit.paths import PROJECT_ROOT, benchmark_root, shared_dir
from esrt_lit.training.released import OPTIMIZER

__all__ = ["register_configs", "wandb_key_configured", "wandb_mode"]

WANDB_MODES = ("online", "offline", "disabled", "dryrun", "run", "shared")


def wandb_key_configured() -> bool:
    """Whether W&B can log in without asking: ``$WANDB_API_KEY`` or a netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    if not path.is_file():
        return False
    try:
        return netrc.netrc(str(path)).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError):
        return False


def wandb_mode() -> str:
    """``$WANDB_MODE`` if set, else ``online`` with a configured key, else ``offline``."""
    env = os.environ.get("WANDB_MODE")
    if env:
        if env not in WANDB_MODES:
            raise ValueError(f"WANDB_MODE={env!r}; expected one of {', '.join(WANDB_MODES)}")
        return env
    return "online" if wandb_key_configured() else "offline"


def _benchmark_root(default: str | None = None) -> str | None:
    root = benchmark_root()
    return str(root) if root is not None else default


def _shared_data(default: str | None = None) -> str | None:
    shared = shared_dir()
    data = shared / "data" if shared is not None else None
    return str(data) if data is not None and data.is_dir() else default


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _hydra_cfg() -> Any:
    """The running Hydra app's ``hydra`` node, or None outside one."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def _select(hc: Any, key: str) -> Any:
    """``hc.<key>``, or None where it is missing (a composed, not launched, config)."""
    return OmegaConf.select(hc, key, default=None, throw_on_missing=False)


def _is_multirun(hc: Any) -> bool:
    from hydra.types import RunMode

    return hc is not None and hc.mode == RunMode.MULTIRUN


def _run_group() -> str | None:
    hc = _hydra_cfg()
    if not _is_multirun(hc):
        return None
    return f"{_select(hc, 'job.name')}-{Path(str(_select(hc, 'sweep.dir'))).name}"


def _swept_keys(hc: Any) -> set[str]:
    """Keys a sweep varies: the sweeper's ``params`` and command-line overrides in sweep syntax."""
    keys = set((_select(hc, "sweeper.params") or {}).keys())
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception:  # not Hydra's command line (e.g. a launcher's worker): the sweeper's params only
        return keys
    return keys | {o.key_or_group for o in parsed if o.is_sweep_override()}


def _run_name(output_dir: str) -> str:
    hc = _hydra_cfg()
    if not _is_multirun(hc):
        return Path(output_dir).name
    swept = _swept_keys(hc)
    varying = [o for o in _select(hc, "overrides.task") or [] if o.split("=", 1)[0].lstrip("+~") in swept]
    return f"{_select(hc, 'job.num')}:{','.join(varying) if varying else _select(hc, 'job.override_dirname')}"


def _hydra_subdir(resume_dir: str | None, stamp: str) -> str:
    return ".hydra" if resume_dir is None else f".hydra/resume_{stamp}"


def _run_id(path: str) -> str:
    return hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:12]


def register_configs() -> None:
    """Store the released nodes and register the ``esrt.*`` resolvers (see the module docstring; idempotent)."""
    store = ConfigStore.instance()
    released = {k: v for k, v in ESRTConfig().as_dict().items() if k != "scale"}
    node = {"_target_": NETWORK_TARGETS[0], "scale": "${scale}", **released}
    store.store(group="model", name="esrt_released", node=node)
    store.store(group="optimizer", name="adam_released", node=dict(OPTIMIZER))
    resolvers = {
        "esrt.project_root": lambda: str(PROJECT_ROOT),
        "esrt.benchmark_root": _benchmark_root,
        "esrt.shared_data": _shared_data,
        "esrt.first": _first,
        "esrt.wandb_mode": wandb_mode,
        "esrt.run_group": _run_group,
        "esrt.run_name": _run_name,
        "esrt.run_id": _run_id,
        "esrt.hydra_subdir": _hydra_subdir,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=False)
