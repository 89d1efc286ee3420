"""On a CUDA device: the released network's outputs, the fused attention kernels, streaming, training.

Skipped without a GPU; nothing else in the suite needs one.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from esrt_lit.inference import upscale
from esrt_lit.models import ESRT
from esrt_lit.models.streaming import forward_streamed

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

FUSED = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_golden_outputs_on_cuda_with_fused_kernels_only(golden: dict, scale: int) -> None:
    entry = golden[f"x{scale}"]
    net64 = ESRT.from_official_checkpoint(entry["state_dict"]).double().eval().cuda()
    net32 = ESRT.from_official_checkpoint(entry["state_dict"]).eval().cuda()
    for case in entry["cases"].values():
        lr, sr = case["lr"].cuda(), case["sr"].cuda()
        with torch.inference_mode():
            out64 = net64(lr)  # float64: the math kernel (the fused ones take no float64)
            with sdpa_kernel(FUSED):  # raises if the padded heads still needed the math fallback
                out32 = net32(lr.float()).double()
                bf16 = upscale(net32, lr.float(), amp="bf16").double()
        assert (out64 - sr).abs().max().item() <= 1e-8
        # TF32 convolutions (cuDNN's default) keep ~10 mantissa bits
        assert ((out32 - sr).abs().max() / sr.abs().max()).item() <= 5e-3
        assert ((bf16 - sr).abs().max() / sr.abs().max()).item() <= 5e-2


def test_streamed_and_training_step_on_cuda() -> None:
    torch.manual_seed(0)
    net = ESRT(scale=4).cuda().eval()
    x = torch.rand(1, 3, 61, 83, device="cuda")
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # TF32 rounding differs between cuDNN algorithms
    try:
        with torch.inference_mode(), sdpa_kernel(FUSED):
            whole, streamed = net(x), forward_streamed(net, x, rows=16)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    assert torch.allclose(whole, streamed, atol=1e-5, rtol=1e-5)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    lr, hr = torch.rand(4, 3, 24, 24, device="cuda"), torch.rand(4, 3, 96, 96, device="cuda")
    with sdpa_kernel(FUSED), torch.autocast("cuda", dtype=torch.bfloat16):
        loss = (net(lr).float() - hr).abs().mean()
    loss.backward()
    opt.step()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
