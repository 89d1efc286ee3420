"""MAC counts against a hand count, peak-memory probe, isolated runs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch import nn

from esrt_lit.models import ESRT
from esrt_lit.profiling import count_macs, measure_latency, run_isolated

F, HEADS = 8, 4  # n_feats, heads (heads do not change the count)


def arfb(a: int) -> int:
    """MACs of one ARFB at ``a`` pixels: two residual units (F→F/2→F 3×3), the 1×1 fuse (2F→F),
    channel attention on one pooled pixel (F→1→F), the 3×3 ConvReLU (F→F)."""
    return 2 * (a * (F // 2) * F * 9 * 2) + a * F * 2 * F + 2 * F * 1 + a * F * F * 9


def attention(n: int, splits: int = 4) -> int:
    """q·kᵀ and attn·v within torch.split-style chunks, all heads together (width 9F/2)."""
    chunk = n // splits
    lengths = [chunk] * (n // chunk) + ([n % chunk] if n % chunk else [])
    return sum(2 * length * length * (9 * F // 2) for length in lengths)


def hand_count(h: int, w: int, scale: int) -> tuple[int, int]:
    """(exact, paper) MACs of ESRT(n_feats=8, n_hpb=3, low_repeats=5) on an h×w input."""
    a, low = h * w, (h // 2) * (w // 2)
    # ARFB in, ARFB high, 5 × ARFB low, 1×1 fuse, channel attention, ARFB out
    hpb = arfb(a) + arfb(a) + 5 * arfb(low) + a * F * 2 * F + 2 * F + arfb(a)
    lcb = 3 * hpb + a * F * 3 * F * 9
    d = 9 * F  # token width
    et_linear = a * (d * d // 2 + (d // 2) * (3 * d // 2) + (d // 2) * d + d * (d // 4) + (d // 4) * d)
    ltb = et_linear + a * F * F * 9
    convs = a * 3 * F * 9 + lcb + ltb + a * F * F * 9  # sfe, LCB, LTB, body conv
    # upsampler convolutions: one F→9F at a pixels for x3; F→4F at a, 4a, ... for x2 and x4
    up = a * F * 9 * F * 9 if scale == 3 else sum((a * 4**i) * F * 4 * F * 9 for i in range(scale // 2))
    ir = 2 * up + 2 * (a * scale * scale) * F * 3 * 9
    paper = convs + ir
    return paper + attention(a), paper


@pytest.mark.parametrize(("h", "w", "scale"), [(8, 8, 4), (5, 7, 2), (6, 9, 3)])
def test_mac_counts_match_a_hand_count(h: int, w: int, scale: int) -> None:
    net = ESRT(scale=scale, n_feats=F, et_heads=HEADS)
    exact, paper = hand_count(h, w, scale)
    assert count_macs(net, (h, w)) == {"exact": exact, "paper": paper}
    assert count_macs(net.double(), (h, w)) == {"exact": exact, "paper": paper}
    assert count_macs(net, (h, w), batch=3) == {"exact": 3 * exact, "paper": 3 * paper}


def test_exact_count_is_the_same_for_both_attention_paths_and_on_the_real_device() -> None:
    net = ESRT(scale=2, n_feats=F, et_heads=HEADS)
    sdpa = count_macs(net, (7, 5))
    net.set_attention("explicit")
    assert count_macs(net, (7, 5)) == sdpa
    # a model that cannot go to the meta device is counted where it is (CPU flash attention included)
    from torch.utils.flop_counter import FlopCounterMode

    from esrt_lit.profiling import _CUSTOM_FLOPS

    net.set_attention("sdpa")
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS) as counter:
        net(torch.rand(1, 3, 7, 5))
    assert counter.get_total_flops() // 2 == sdpa["exact"]


def test_released_x4_counts() -> None:
    # 1280×720 output: attention is ~80 % of the exact count, which the paper's convention leaves out
    macs = count_macs(ESRT(scale=4), (180, 320))
    assert macs["exact"] == 297_321_065_856
    assert macs["paper"] == 58_442_345_856


def test_count_macs_leaves_the_model_untouched() -> None:
    net = ESRT(scale=2, n_feats=F, et_heads=HEADS).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    count_macs(net, (6, 6))
    assert net.training
    assert all(p.device.type == "cpu" for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="lr_hw"):
        count_macs(net, (0, 6))


def _in_fresh_process(body: str) -> dict:
    """Run ``body`` (which sets ``result``) in a new interpreter and return ``result``: a process's
    resident memory depends on what earlier tests in the same worker left mapped, which made a 64 MiB
    block invisible to the high-water mark on a fresh clone's CI run (peak 0)."""
    code = (
        "import gc, json, torch\n"
        "from esrt_lit.profiling import PeakMemory\n"
        + textwrap.dedent(body)
        + "\nprint(json.dumps(result))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_peak_memory_sees_a_known_allocation() -> None:
    result = _in_fresh_process(
        """
        with PeakMemory() as mem:
            block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
            del block
        with PeakMemory() as small:
            torch.ones(10)
        result = [mem.method, mem.peak_bytes, small.peak_bytes]
        """
    )
    method, peak, small = result
    assert method in ("vmhwm", "ru_maxrss")
    if method == "vmhwm":
        assert 60 * 2**20 <= peak <= 80 * 2**20
        assert small < 8 * 2**20  # the earlier peak does not leak into a new measurement


def test_peak_memory_is_not_lowered_by_garbage_freed_in_the_block() -> None:
    result = _in_fresh_process(
        """
        cycle = [torch.ones(128 * 2**20 // 4)]  # 128 MiB held by cyclic garbage, as a test may leave
        cycle.append(cycle)
        del cycle
        with PeakMemory() as mem:
            gc.collect()  # what an automatic collection during the block does
            block = torch.ones(64 * 2**20 // 4)
            del block
        result = [mem.method, mem.peak_bytes]
        """
    )
    method, peak = result
    if method == "vmhwm":
        assert 60 * 2**20 <= peak <= 80 * 2**20


def test_measure_latency_runs_warmup_and_repeats() -> None:
    calls = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(torch.is_inference_mode_enabled())
            time.sleep(0.005)
            return x

    assert 5 <= measure_latency(Probe(), torch.zeros(1), repeats=3, warmup=2) < 1000  # milliseconds
    assert calls == [True] * 5
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(Probe(), torch.zeros(1), repeats=0)


def test_run_isolated_returns_results_and_failures() -> None:
    failed = run_isolated("esrt_lit.models:ESRT", {"scale": 5}, timeout=120)
    assert failed == {"ok": False, "error": "ValueError: scale=5 is not supported; allowed values: 2, 3, 4"}
    done = run_isolated("json:loads", {"s": '{"a": 1}'}, timeout=120)
    assert done == {"ok": True, "a": 1}
    oom = run_isolated("torch:ones", {"size": [2**33]}, timeout=120, mem_limit_bytes=4 << 30)
    assert oom["ok"] is False and "memory" in oom["error"]
    with pytest.raises(ValueError, match="module:function"):
        run_isolated("json.loads")


def test_bench_workers_and_table() -> None:
    from esrt_lit.bench import Row, format_table, infer_worker

    result = infer_worker(scale=2, lr_hw=[8, 12], tile=6, overlap=2, repeats=2)
    assert result["seconds"] > 0 and set(result) == {"seconds", "peak_bytes"}  # PeakMemory: its own tests
    row = Row("inference", "default", 2, (8, 12), macs=3 * 10**9, macs_paper=10**9, seconds=2.0)
    row.ratio_time = 7.5
    assert row.gflops == 3.0
    table = format_table([row, Row("data loader", "num_workers=0", note="123 samples/s")]).splitlines()
    assert len(table) == 4 and table[0].count("|") == table[2].count("|") == 13
    assert "| 3.0 | 1.0 | 2.000 |  | 3 | 7.5 |  |" in table[2]
    assert table[3].endswith("| 123 samples/s |")


def test_bench_cli_rejects_unknown_sections_and_existing_json(tmp_path) -> None:
    from esrt_lit.bench import main, run_bench

    with pytest.raises(SystemExit):
        main(["--quick", "--sections", "inference,nope"])
    existing = tmp_path / "bench.json"
    existing.write_text("{}")
    with pytest.raises(SystemExit):
        main(["--quick", "--json", str(existing)])
    assert existing.read_text() == "{}"
    with pytest.raises(ValueError, match="nope"):
        run_bench("quick", sections=["nope"])


@pytest.mark.slow
def test_quick_bench_measures_every_inference_path(tmp_path) -> None:
    import json

    from esrt_lit.bench import main

    out = tmp_path / "bench.json"
    assert main(["--quick", "--sections", "inference", "--threads", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    measured = {(r["path"], tuple(r["lr_hw"])): r for r in rows if r["lr_hw"]}
    assert set(measured) == {
        ("default", (128, 128)),
        ("explicit", (128, 128)),
        ("default", (180, 320)),
        ("streamed 32 rows", (180, 320)),
        ("tiled 192/16", (180, 320)),
    }
    for row in measured.values():
        assert "FAILED" not in row["note"] and row["seconds"] > 0 and row["peak_bytes"] > 0
    assert measured[("default", (128, 128))]["ratio_time"] is not None
    assert (
        measured[("default", (180, 320))]["macs"] == 297_321_065_856
    )  # 297 G: the x4 row of docs/performance.md
