"""What a network costs: multiply-accumulates, latency and peak memory.

MACs come in two conventions (Lu et al., arXiv 2108.11084, report "Multi-Adds" for a 1280×720
output):

- ``exact``: every multiply-accumulate of the convolutions, linear layers **and** attention matrix
  products, counted with :class:`torch.utils.flop_counter.FlopCounterMode` (MACs = FLOPs / 2) on a
  ``meta``-device copy of the model, so counting costs no memory and milliseconds of time. Element-wise
  work (activations, norms, softmax, residual adds) is not counted, as in every MAC convention.
- ``paper``: only convolutions and linear layers, from their output shapes, as ``thop`` counts them
  (``out.numel() · in_ch/groups · k_h·k_w`` for a convolution, ``out.numel() · in_features`` for a
  linear layer; biases not counted). This is the convention of the paper's table, which therefore leaves
  out the EMHA's ``q·kᵀ`` and ``attn·v`` products (80 % of the exact count for x4 at 320×180).

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` above the level at entry. On CPU the
resident-set high-water mark (``VmHWM`` in ``/proc/self/status``) is reset through
``/proc/self/clear_refs`` at entry and read at exit; the peak is ``VmHWM − VmRSS(entry)``: memory the
process actually touched, model and input excluded (garbage is collected first, so that objects
freed during the block do not lower the level it is measured from). Memory the allocator had already
reserved and reuses is not counted again, so a measurement is only exact in a process that has not run
a larger workload before: :func:`run_isolated` runs one in a fresh interpreter. Where ``clear_refs`` cannot be
written (not Linux), the ``ru_maxrss`` growth is used, which is exact only for a process's first peak.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import importlib
import json
import logging
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

__all__ = [
    "PeakMemory",
    "count_macs",
    "measure_latency",
    "run_isolated",
    "synchronize",
]

log = logging.getLogger(__name__)

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_RESULT_TAG = "ESRT_PROFILING_RESULT "


def _cpu_flash_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # FlopCounterMode knows the CUDA SDPA kernels; the CPU flash kernel is registered here.
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_CUSTOM_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_flops}


def _layer_macs(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> int:
    """MACs of one convolution or linear layer from its shapes (``thop``'s convention, no bias)."""
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    assert isinstance(module, nn.modules.conv._ConvNd)
    kernel = 1
    for k in module.kernel_size:
        kernel *= k
    if module.transposed:  # every input element is scattered through out_ch/groups kernels
        return inputs[0].numel() * (module.out_channels // module.groups) * kernel
    return output.numel() * (module.in_channels // module.groups) * kernel


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(iter(model.parameters()), None)
    return (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)


def count_macs(model: nn.Module, lr_hw: Sequence[int], batch: int = 1) -> dict[str, int]:
    """Multiply-accumulates of one forward pass of ``model`` on a ``[batch, 3, h, w]`` input.

    The count runs on a ``meta``-device copy (no data, no memory, milliseconds); a model that cannot be
    copied is run on its own device under :func:`torch.inference_mode` instead.

    Args:
        model: the network (left unchanged).
        lr_hw: input height and width.
        batch: batch size.

    Returns:
        ``{"exact": ..., "paper": ...}``: all MACs including the attention matrix products, and the
        paper's convention (convolutions and linear layers only); see the module docstring.
    """
    h, w = (int(v) for v in lr_hw)
    if h < 1 or w < 1 or batch < 1:
        raise ValueError(f"lr_hw={tuple(lr_hw)}, batch={batch}; expected positive sizes")
    device, dtype = _device_dtype(model)
    try:
        net = copy.deepcopy(model).to("meta")
        device = torch.device("meta")
    except (RuntimeError, TypeError, NotImplementedError) as err:
        log.info("count_macs: no meta copy of %s (%s); counting on its device", type(model).__name__, err)
        net = model
    paper = 0

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        nonlocal paper
        paper += _layer_macs(module, inputs, output)

    layers = (nn.Linear, nn.modules.conv._ConvNd)
    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, layers)]
    was_training = net.training
    net.eval()
    try:
        x = torch.zeros(batch, 3, h, w, device=device, dtype=dtype)
        counter = FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS)
        with torch.inference_mode(), counter:
            net(x)
    finally:
        for handle in handles:
            handle.remove()
        net.train(was_training)
    return {"exact": counter.get_total_flops() // 2, "paper": paper}


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (a CUDA device's; nothing to wait for elsewhere), so a clock or
    a memory reading sees it done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(model: nn.Module, x: torch.Tensor, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time in milliseconds of ``model(x)`` under :func:`torch.inference_mode`.

    Args:
        model: the network, already on ``x``'s device and in the wanted mode.
        x: the input.
        repeats: timed passes (the median is returned).
        warmup: untimed passes first (kernel selection, caches).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats={repeats}, warmup={warmup}; expected repeats >= 1 and warmup >= 0")
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            synchronize(x.device)
            start = time.perf_counter()
            model(x)
            synchronize(x.device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[len(times) // 2]


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{_STATUS} has no {field} line")
    return int(match.group(1))


class PeakMemory:
    """Context manager measuring the peak memory a block allocates, in bytes (see the module docstring).

    ``with PeakMemory(device) as mem: ...`` then ``mem.peak_bytes``; ``mem.method`` names the probe
    (``cuda``, ``vmhwm`` or ``ru_maxrss``).
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.peak_bytes = 0
        self.method = ""
        self._base = 0

    def __enter__(self) -> PeakMemory:
        gc.collect()  # garbage freed inside the block would lower the level the peak is measured from
        if self.device.type == "cuda":
            self.method = "cuda"
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        try:
            _CLEAR_REFS.write_text("5")  # resets VmHWM to the current VmRSS
            self.method = "vmhwm"
            self._base = _status_kib("VmRSS") * 1024
        except OSError:
            self.method = "ru_maxrss"
            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def __exit__(self, *exc: object) -> None:
        if self.method == "cuda":
            synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self.method == "vmhwm":
            peak = _status_kib("VmHWM") * 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.peak_bytes = max(peak - self._base, 0)


def _limit_memory(limit_bytes: int | None) -> Callable[[], None] | None:
    if limit_bytes is None:
        return None

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return apply


def run_isolated(
    target: str,
    kwargs: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    mem_limit_bytes: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Call ``module:function(**kwargs)`` in a fresh Python process and return its JSON-able result.

    Used for measurements whose peak memory must not be polluted by earlier ones, and for those that
    may run out of memory: a failure comes back as ``{"ok": False, "error": ...}`` instead of killing
    the caller.

    Args:
        target: ``"package.module:function"``; the function takes keyword arguments and returns a
            JSON-serialisable dict.
        kwargs: its keyword arguments (JSON-serialisable).
        timeout: seconds before the process is killed.
        mem_limit_bytes: address-space limit of the child (``RLIMIT_AS``), so that an allocation beyond
            it fails inside the child rather than pushing the machine into the OOM killer.
        threads: ``torch.set_num_threads`` in the child.

    Returns:
        The function's dict with ``"ok": True``, or ``{"ok": False, "error": message}``.
    """
    if ":" not in target:
        raise ValueError(f"target={target!r}; expected 'package.module:function'")
    cmd = [sys.executable, "-m", "esrt_lit.profiling", target, json.dumps(dict(kwargs or {}))]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=_limit_memory(mem_limit_bytes),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_RESULT_TAG):
            return {"ok": True, **json.loads(line[len(_RESULT_TAG) :])}
    if proc.returncode < 0:
        error = f"killed by signal {-proc.returncode}" + (
            " (out of memory?)" if proc.returncode == -9 else ""
        )
    else:
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        error = tail[-1] if tail else f"exit status {proc.returncode}"
        if "can't allocate memory" in error or "out of memory" in error.lower():
            error = "out of memory: " + error
    return {"ok": False, "error": error[:300]}


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Keep the child's stdout for the result line only."""
    saved = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = saved


def _child(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m esrt_lit.profiling", description="run_isolated's child")
    parser.add_argument("target")
    parser.add_argument("kwargs")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    module, _, name = args.target.partition(":")
    func = getattr(importlib.import_module(module), name)
    with _stdout_to_stderr():
        result = func(**json.loads(args.kwargs))
    sys.stdout.write(_RESULT_TAG + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(_child())
