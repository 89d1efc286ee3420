"""Published numbers from the ESRT paper (Lu et al., arXiv 2108.11084), as listed in the project's
reference notes (``shared/reference/ESRT.md``): PSNR/SSIM on the Y channel with a border of
``scale`` pixels cropped. The notes mark which ESRT cells were read from secondary copies of the
paper's table; they are reference values, not test oracles. ``tests/test_reference.py`` checks every
number here against the notes' tables."""

from __future__ import annotations

BENCHMARKS = ("Set5", "Set14", "B100", "Urban100", "Manga109")

#: ESRT, paper's main table: scale -> benchmark -> (PSNR, SSIM).
PAPER_ESRT: dict[int, dict[str, tuple[float, float]]] = {
    2: {
        "Set5": (38.03, 0.9600),
        "Set14": (33.75, 0.9184),
        "B100": (32.25, 0.9001),
        "Urban100": (32.58, 0.9318),
        "Manga109": (39.12, 0.9774),
    },
    3: {
        "Set5": (34.42, 0.9268),
        "Set14": (30.43, 0.8433),
        "B100": (29.15, 0.8063),
        "Urban100": (28.46, 0.8574),
        "Manga109": (33.95, 0.9455),
    },
    4: {
        "Set5": (32.19, 0.8947),
        "Set14": (28.69, 0.7833),
        "B100": (27.69, 0.7379),
        "Urban100": (26.39, 0.7962),
        "Manga109": (30.75, 0.9100),
    },
}

#: Bicubic interpolation (MATLAB imresize + rgb2ycbcr), the row every SR paper prints.
PAPER_BICUBIC: dict[int, dict[str, tuple[float, float]]] = {
    2: {
        "Set5": (33.66, 0.9299),
        "Set14": (30.24, 0.8688),
        "B100": (29.56, 0.8431),
        "Urban100": (26.88, 0.8403),
        "Manga109": (30.80, 0.9339),
    },
    3: {
        "Set5": (30.39, 0.8682),
        "Set14": (27.55, 0.7742),
        "B100": (27.21, 0.7385),
        "Urban100": (24.46, 0.7349),
        "Manga109": (26.95, 0.8565),
    },
    4: {
        "Set5": (28.42, 0.8104),
        "Set14": (26.00, 0.7027),
        "B100": (25.96, 0.6675),
        "Urban100": (23.14, 0.6577),
        "Manga109": (24.89, 0.7866),
    },
}

#: Parameters of the released code per scale, less the 12 unused ``weight1`` scalars.
PORT_PARAMS = {2: 677_771, 3: 770_251, 4: 751_755}
