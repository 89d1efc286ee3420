"""``make demo``: build ESRT x4, load the golden weights when ``../shared`` is there (random ones
otherwise), upscale a scikit-image sample photo, save input and output PNGs, report params and time."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data as skdata

from esrt_lit import ESRT
from esrt_lit.data.io import write_image
from esrt_lit.paths import golden_path

log = logging.getLogger("esrt_lit.demo")


def main(out_root: str | Path = "demo_out") -> Path:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out_dir = Path(out_root) / datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=False)
    golden = golden_path()
    if golden is not None:
        model = ESRT.from_official_checkpoint(torch.load(golden, weights_only=True)["x4"]["state_dict"])
        weights = f"golden weights from {golden}"
    else:
        model = ESRT(scale=4)
        weights = "random weights (../shared not found)"
    model.eval()
    photo = Image.fromarray(skdata.astronaut())
    lr = np.array(photo.resize((photo.width // 4, photo.height // 4), Image.BICUBIC))
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
    start = time.perf_counter()
    with torch.inference_mode():
        sr = model(x)
    elapsed = time.perf_counter() - start
    out = (sr[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    lr_path = write_image(out_dir / "astronaut_lr.png", lr)
    sr_path = write_image(out_dir / "astronaut_esrt_x4.png", out)
    params = sum(p.numel() for p in model.parameters())
    log.info("ESRT x4 (%s): %s parameters", weights, f"{params:,}")
    log.info("upscaled %dx%d -> %dx%d in %.2f s", lr.shape[1], lr.shape[0], out.shape[1], out.shape[0], elapsed)
    log.info("input:  %s\noutput: %s", lr_path, sr_path)
    return out_dir


if __name__ == "__main__":
    main()
