"""Bad input through every command: one line that names the culprit, exit status non-zero, no
traceback, and nothing that existed before changed.

Each case runs the command's real entry point in this process (``sys.argv`` as typed, output captured),
which is what ``python -m <module>`` runs, minus the interpreter start-up; ``test_cli_process_*`` runs a
few as real subprocesses. The workspace (images, checkpoints, a run folder, a sweep) is built once; its
files are hashed before each case and checked after it.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from esrt_lit.models import ESRT
from esrt_lit.training.module import describe_net
from train_helpers import TINY_MODEL, make_tiny_images, run_cli, run_command, tiny_net, tiny_overrides

pytestmark = pytest.mark.slow

TRACEBACK = "Traceback (most recent call last)"


def _png16(path: Path, image: np.ndarray) -> Path:
    """A 16-bit PNG (PIL cannot write 16-bit RGB ones)."""
    h, w, c = image.shape
    rows = b"".join(b"\x00" + image[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 3: 2}[c], 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


def _image(path: Path, h: int, w: int, channels: int = 3, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)
    Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels).save(path)
    return path


def _training_checkpoint(path: Path, net: ESRT) -> Path:
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"net": describe_net(net)}}, path)
    return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workspace every case reads; see the module docstring."""
    root = tmp_path_factory.mktemp("bad")
    make_tiny_images(root / "tiny")
    # training folders with one bad file each
    for name, write in (
        ("truncated", lambda p: p.write_bytes(_image(p, 64, 64).read_bytes()[:300])),
        ("text", lambda p: p.write_text("not an image")),
        ("empty", lambda p: p.write_bytes(b"")),
    ):
        folder = root / f"train_{name}"
        for i in range(2):
            _image(folder / f"good{i}.png", 64, 64, seed=i)
        write(folder / f"bad_{name}.png")
    _image(root / "train_small" / "small.png", 16, 16)
    _image(root / "val_tiny" / "dot.png", 1, 1)
    # benchmark packs: an LR of the wrong size, a missing LR; a plain set with a 1x1 image
    for pack, lr_shape in (("wrongsize", (11, 12)), ("missing", None)):
        _image(root / f"bench_{pack}" / "Set5" / "HR" / "baby.png", 24, 24)
        lr_dir = root / f"bench_{pack}" / "Set5" / "LR_bicubic" / "X2"
        lr_dir.mkdir(parents=True)
        if lr_shape is not None:
            _image(lr_dir / "babyx2.png", *lr_shape)
    _image(root / "bench_dot" / "Set5" / "dot.png", 1, 1)
    _image(root / "bench_small" / "Set5" / "a.png", 12, 10)
    # images to upscale
    _image(root / "up" / "a.png", 12, 10)
    _image(root / "up_bad" / "a.png", 12, 10)
    (root / "up_bad" / "b.png").write_text("not an image")
    _image(root / "up_dot" / "dot.png", 1, 1)
    _png16(root / "rgb16.png", np.full((8, 8, 3), 40000, np.uint16))
    _png16(root / "grey16.png", np.full((8, 8, 1), 40000, np.uint16))
    (root / "a_file").write_text("a file, not a folder")
    _image(root / "out_taken" / "a.png", 4, 4)
    (root / "onnx_taken.onnx").write_text("user data")
    # checkpoints
    ck = root / "ckpt"
    ck.mkdir()
    _training_checkpoint(ck / "x2.ckpt", tiny_net())
    _training_checkpoint(ck / "other.ckpt", tiny_net(n_hpb=2))
    torch.manual_seed(0)
    torch.save(ESRT(scale=2).state_dict(), ck / "plain_x2.pth")  # the released width: its heads are 8
    (ck / "random.ckpt").write_bytes(np.random.default_rng(0).bytes(4096))
    (ck / "empty.ckpt").write_bytes(b"")
    torch.save({"state_dict": tiny_net().state_dict(), "extra": object()}, ck / "pickled.ckpt")
    torch.save({"lr": 0.1}, ck / "nothing.pth")
    # a finished run folder, and a folder that is no run
    run = root / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- scale=2\n")
    (run / ".hydra" / "config.yaml").write_text("scale: 2\n")
    (run / "checkpoints").mkdir()
    _training_checkpoint(run / "checkpoints" / "last.ckpt", tiny_net())
    (run / "metrics.json").write_text("{}\n")
    (root / "not_a_run").mkdir()
    (root / "not_a_run" / "notes.txt").write_text("notes")
    # sweeps: one without validation scores; an empty folder
    job = root / "sweep_noval" / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("- model.n_hpb=1\n")
    (job / "metrics.json").write_text('{"params": 1000, "global_step": 2}\n')
    (root / "empty_dir").mkdir()
    report_job = root / "sweep_reported" / "0"
    (report_job / ".hydra").mkdir(parents=True)
    (report_job / ".hydra" / "overrides.yaml").write_text("- model.n_hpb=1\n")
    (report_job / "metrics.json").write_text(
        '{"params": 1000, "val/Set5/psnr": 30.0, "val/Set5/ssim": 0.9}\n'
    )
    (root / "sweep_reported" / "report.md").write_text("my notes")
    return root


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def _last_line(output: str) -> str:
    return next(line for line in reversed(output.splitlines()) if line.strip())


TRAIN = "esrt_lit.train"
EVAL = "esrt_lit.eval"
UPSCALE = "esrt_lit.upscale"
EXPORT = "esrt_lit.export"
REPORT = "esrt_lit.report"
PREPARE = "esrt_lit.data.prepare"
THROUGHPUT = "esrt_lit.data.throughput"

# (id, command, arguments ({ws} is the workspace, {out} a fresh folder), what the error line names)
CASES = [
    # --- train: values ---
    ("scale", TRAIN, ["scale=5"], "scale=5 is not supported; allowed values: 2, 3, 4"),
    ("scale-text", TRAIN, ["scale=abc"], "scale='abc' is not supported"),
    ("model-group", TRAIN, ["model=foo"], "Could not find 'model/foo'"),
    ("model-knob-text", TRAIN, ["model.n_hpb=abc"], "n_hpb='abc' is invalid"),
    ("model-heads", TRAIN, ["model.et_heads=5"], "et_heads=5 does not divide the attention width"),
    ("model-bicubic", TRAIN, ["model=bicubic"], "model=bicubic has no parameters to train"),
    ("patch-0", TRAIN, ["data.patch_size=0"], "patch_size=0"),
    ("patch-1", TRAIN, ["data.patch_size=1"], "data.patch_size=1: input of 1×1 pixels is too small"),
    ("batch-0", TRAIN, ["data.batch_size=0"], "batch_size=0"),
    ("iters-0", TRAIN, ["data.iters_per_epoch=0"], "iters_per_epoch=0"),
    ("workers", TRAIN, ["data.num_workers=-1"], "num_workers=-1"),
    ("cache", TRAIN, ["data.cache=disk"], "cache='disk'"),
    ("lr-negative", TRAIN, ["optimizer.lr=-1"], "optimizer.lr=-1 is invalid"),
    ("lr-nan", TRAIN, ["optimizer.lr=nan"], "optimizer.lr=nan is invalid"),
    ("lr-inf", TRAIN, ["optimizer.lr=inf"], "optimizer.lr=inf is invalid"),
    ("monitor", TRAIN, ["monitor_set=Set99"], "monitor_set='Set99' is not a validation set"),
    ("precision", TRAIN, ["trainer.precision=17"], "trainer: "),
    # --- train: data ---
    (
        "train-folder",
        TRAIN,
        ["data.train=[{kind:folder,path:/nonexistent}]"],
        "image folder not found: /nonexistent",
    ),
    ("train-kind", TRAIN, ["data.train=[{kind:nope}]"], "source spec {'kind': 'nope'}: kind='nope'"),
    (
        "train-target",
        TRAIN,
        ["data.train=[{_target_:torch.nn.Identity}]"],
        "_target_ 'torch.nn.Identity' is not a source class (no records method)",
    ),
    (
        "train-target-key",
        TRAIN,
        ["data.train=[{_target_:esrt_lit.data.sources.FolderSource,pth:x}]"],
        "FolderSource takes no parameter 'pth'; did you mean data.train[0].path?",
    ),
    (
        "train-target-missing",
        TRAIN,
        ["data.train=[{_target_:esrt_lit.data.sources.FolderSource,name:n}]"],
        "missing key(s) path; accepted: limit, name, path",
    ),
    (
        "train-truncated",
        TRAIN,
        ["data.train=[{kind:folder,path:'{ws}/train_truncated'}]"],
        "bad_truncated.png: truncated image data",
    ),
    (
        "train-text",
        TRAIN,
        ["data.train=[{kind:folder,path:'{ws}/train_text'}]"],
        "bad_text.png: unreadable or truncated",
    ),
    (
        "train-empty",
        TRAIN,
        ["data.train=[{kind:folder,path:'{ws}/train_empty'}]"],
        "bad_empty.png: unreadable or truncated",
    ),
    (
        "train-truncated-uncached",
        TRAIN,
        ["data.train=[{kind:folder,path:'{ws}/train_truncated'}]", "data.cache=none"],
        "bad_truncated.png: truncated image data",
    ),
    (
        "train-small",
        TRAIN,
        ["data.train=[{kind:folder,path:'{ws}/train_small'}]", "data.patch_size=12", "scale=4"],
        "small.png: image too small for the patch",
    ),
    (
        "val-dot",
        TRAIN,
        ["data.val=[{kind:folder,name:dot,path:'{ws}/val_tiny'}]"],
        "dot.png: image of 1x1 pixels is too small for x2",
    ),
    (
        "val-lr-size",
        TRAIN,
        ["data.val=[{kind:benchmarks,root:'{ws}/bench_wrongsize'}]"],
        "babyx2.png is 12x11, HR",
    ),
    (
        "val-lr-missing",
        TRAIN,
        ["data.val=[{kind:benchmarks,root:'{ws}/bench_missing'}]"],
        "baby.png: no x2 LR image in",
    ),
    # --- train: checkpoints, resume, run folders ---
    ("ckpt-missing", TRAIN, ["ckpt_path=/nope.ckpt"], "checkpoint not found: /nope.ckpt"),
    ("ckpt-random", TRAIN, ["ckpt_path={ws}/ckpt/random.ckpt"], "random.ckpt: not a PyTorch checkpoint"),
    ("ckpt-empty", TRAIN, ["ckpt_path={ws}/ckpt/empty.ckpt"], "empty.ckpt: not a PyTorch checkpoint"),
    (
        "ckpt-pickled",
        TRAIN,
        ["ckpt_path={ws}/ckpt/pickled.ckpt"],
        "pickled.ckpt: holds pickled Python objects",
    ),
    ("ckpt-other-net", TRAIN, ["ckpt_path={ws}/ckpt/other.ckpt"], "n_hpb: checkpoint 2, asked 1"),
    ("ckpt-last-alone", TRAIN, ["ckpt_path=last"], "ckpt_path=last resumes a run in its own folder"),
    ("resume-missing", TRAIN, ["resume_dir=/nope/run"], "resume_dir=/nope/run: no such folder"),
    ("resume-no-ckpt", TRAIN, ["resume_dir={ws}/not_a_run"], "no checkpoints/last.ckpt to resume from"),
    (
        "resume-other-net",
        TRAIN,
        ["resume_dir={ws}/run", "model.n_feats=16"],
        "n_feats: checkpoint 8, asked 16",
    ),
    ("run-dir-taken", TRAIN, ["hydra.run.dir={ws}/run"], "already holds a run"),
    ("run-dir-file", TRAIN, ["hydra.run.dir={ws}/a_file"], "a_file is a file; expected a folder"),
    # --- eval ---
    ("eval-nothing", EVAL, [], "nothing to run: give ckpt_path="),
    (
        "eval-ckpt-missing",
        EVAL,
        ["ckpt_path=/nope.ckpt"],
        "ckpt_path=/nope.ckpt: checkpoint not found: /nope.ckpt",
    ),
    ("eval-ckpt-random", EVAL, ["ckpt_path={ws}/ckpt/random.ckpt"], "random.ckpt: not a PyTorch checkpoint"),
    (
        "eval-ckpt-pickled",
        EVAL,
        ["ckpt_path={ws}/ckpt/pickled.ckpt"],
        "pickled.ckpt: holds pickled Python objects",
    ),
    (
        "eval-ckpt-no-net",
        EVAL,
        ["ckpt_path={ws}/ckpt/nothing.pth"],
        "nothing.pth: holds no tensors of a network",
    ),
    ("eval-both", EVAL, ["ckpt_path={ws}/ckpt/x2.ckpt", "model=bicubic"], "give one of them"),
    ("eval-scales-text", EVAL, ["model=bicubic", "scales=abc"], "scales=['abc']: 'abc' is not supported"),
    ("eval-scales-0", EVAL, ["model=bicubic", "scales=[0]"], "scales=[0]: 0 is not supported"),
    ("eval-scales-1", EVAL, ["model=bicubic", "scales=[1]"], "scales=[1]: 1 is not supported"),
    ("eval-scales-5", EVAL, ["model=bicubic", "scales=[5]"], "scales=[5]: 5 is not supported"),
    ("eval-scale-of-ckpt", EVAL, ["ckpt_path={ws}/ckpt/x2.ckpt", "scales=[4]"], "holds an x2 network"),
    (
        "eval-cuda",
        EVAL,
        ["model=bicubic", "device=cuda", "scales=[2]"],
        "device=cuda: no CUDA device is available",
    ),
    ("eval-root", EVAL, ["model=bicubic", "benchmark_root=/nope"], "benchmark_root=/nope: folder not found"),
    (
        "eval-names",
        EVAL,
        ["model=bicubic", "benchmark_root={ws}/bench_dot", "names=[Nope]"],
        "Nope not found",
    ),
    (
        "eval-lr-size",
        EVAL,
        ["model=bicubic", "benchmark_root={ws}/bench_wrongsize", "scales=[2]"],
        "babyx2.png is 12x11, HR",
    ),
    (
        "eval-lr-missing",
        EVAL,
        ["model=bicubic", "benchmark_root={ws}/bench_missing", "scales=[2]"],
        "baby.png: no x2 LR image in",
    ),
    (
        "eval-dot",
        EVAL,
        ["model=bicubic", "benchmark_root={ws}/bench_dot", "scales=[2]"],
        "dot.png: image of 1x1 pixels is too small for x2",
    ),
    ("eval-run-dir-taken", EVAL, ["model=bicubic", "hydra.run.dir={ws}/run"], "already holds a run"),
    # --- upscale ---
    (
        "up-no-input",
        UPSCALE,
        ["output={out}", "model=bicubic"],
        "input required: give input=<an image or a folder",
    ),
    (
        "up-input-missing",
        UPSCALE,
        ["input=/nope", "output={out}", "model=bicubic"],
        "input=/nope: no such image or folder",
    ),
    (
        "up-bad-file",
        UPSCALE,
        ["input={ws}/up_bad", "output={out}", "model=bicubic"],
        "b.png: unreadable or truncated",
    ),
    (
        "up-dot",
        UPSCALE,
        ["input={ws}/up_dot", "output={out}", "ckpt_path={ws}/ckpt/x2.ckpt"],
        "dot.png: image of 1x1 pixels is smaller than ESRT's smallest input",
    ),
    (
        "up-scale-of-ckpt",
        UPSCALE,
        ["input={ws}/up", "output={out}", "ckpt_path={ws}/ckpt/x2.ckpt", "scale=4"],
        "holds an x2 network",
    ),
    (
        "up-into-input",
        UPSCALE,
        ["input={ws}/up", "output={ws}/up", "model=bicubic", "overwrite=true"],
        "is the folder of the inputs",
    ),
    (
        "up-16bit-rgb",
        UPSCALE,
        ["input={ws}/rgb16.png", "output={out}", "model=bicubic"],
        "rgb16.png: 16-bit image",
    ),
    (
        "up-16bit-grey",
        UPSCALE,
        ["input={ws}/grey16.png", "output={out}", "model=bicubic"],
        "grey16.png: 16-bit image",
    ),
    (
        "up-output-file",
        UPSCALE,
        ["input={ws}/up", "output={ws}/a_file", "model=bicubic"],
        "a_file is a file; expected a folder",
    ),
    (
        "up-taken",
        UPSCALE,
        ["input={ws}/up", "output={ws}/out_taken", "model=bicubic"],
        "a.png exist(s); pass overwrite=true",
    ),
    ("up-tile-negative", UPSCALE, ["input={ws}/up", "output={out}", "model=bicubic", "tile=-1"], "tile=-1"),
    ("up-tile-text", UPSCALE, ["input={ws}/up", "output={out}", "model=bicubic", "tile=abc"], "tile='abc'"),
    (
        "up-cuda",
        UPSCALE,
        ["input={ws}/up", "output={out}", "model=bicubic", "device=cuda"],
        "device=cuda: no CUDA device",
    ),
    (
        "up-scale",
        UPSCALE,
        ["input={ws}/up", "output={out}", "model=bicubic", "scale=7"],
        "scale=7 is not supported",
    ),
    (
        "up-ckpt-random",
        UPSCALE,
        ["input={ws}/up", "output={out}", "ckpt_path={ws}/ckpt/random.ckpt"],
        "random.ckpt: not a PyTorch checkpoint",
    ),
    # --- export ---
    ("export-no-ckpt", EXPORT, [], "ckpt_path"),
    ("export-ckpt-missing", EXPORT, ["ckpt_path=/nope.pth"], "checkpoint not found: /nope.pth"),
    (
        "export-ckpt-random",
        EXPORT,
        ["ckpt_path={ws}/ckpt/random.ckpt"],
        "random.ckpt: not a PyTorch checkpoint",
    ),
    ("export-format", EXPORT, ["ckpt_path=null", "scale=2", "format=tflite"], "format='tflite'"),
    ("export-scale", EXPORT, ["ckpt_path=null", "scale=7"], "scale=7 is not supported"),
    (
        "export-taken",
        EXPORT,
        ["ckpt_path=null", "scale=2", "output={ws}/onnx_taken.onnx"],
        "already exists; pass overwrite=true",
    ),
    # --- report ---
    ("report-missing", REPORT, ["/nope/sweep"], "sweep directory not found: /nope/sweep"),
    ("report-empty", REPORT, ["{ws}/empty_dir"], "no run found"),
    ("report-not-a-sweep", REPORT, ["{ws}/not_a_run"], "no run found"),
    ("report-no-val", REPORT, ["{ws}/sweep_noval"], "has validation scores"),
    ("report-taken", REPORT, ["{ws}/sweep_reported"], "report.md; pass --overwrite"),
    # --- data tools ---
    ("prepare-name", PREPARE, ["Nope", "--root", "{out}"], "unknown dataset(s) Nope"),
    ("prepare-url", PREPARE, ["Manga109", "--root", "{out}"], "Manga109: no default download URL"),
    (
        "prepare-root-file",
        PREPARE,
        ["Set5", "--root", "{ws}/a_file", "--base-url", "http://127.0.0.1:9"],
        "a_file",
    ),
    (
        "throughput-source",
        THROUGHPUT,
        ["--source", "/nope", "--workers", "0"],
        "image folder not found: /nope",
    ),
    ("throughput-patch", THROUGHPUT, ["--patch-size", "0", "--workers", "0"], "patch_size=0"),
]

HYDRA_COMMANDS = (TRAIN, EVAL, UPSCALE)
#: Errors Hydra reports itself, before a command runs: an unknown option of a config group.
HYDRA_OWN = {"model-group"}


@pytest.mark.parametrize(("case", "module", "args", "named"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_ends_with_one_line(
    case: str, module: str, args: list[str], named: str, ws: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = [a.replace("{ws}", str(ws)).replace("{out}", str(out)) for a in args]
    if module == TRAIN and not any(a.startswith(("resume_dir=", "hydra.run.dir=")) for a in args):
        shrink = tiny_overrides(make_tiny_images(tmp_path / "data"), epochs=1, steps=2)
        if any(a.startswith("model=") for a in args):
            shrink = [a for a in shrink if a not in TINY_MODEL]
        args = [*shrink, "logger=none", *args]
    if module in HYDRA_COMMANDS and not any(a.startswith(("resume_dir=", "hydra.run.dir=")) for a in args):
        args.append(f"hydra.run.dir={tmp_path / 'run'}")
    before = _snapshot(ws)
    code, output = run_command(module, args)
    assert code != 0, f"{case}: exit status 0\n{output[-3000:]}"
    assert TRACEBACK not in output, f"{case}: a traceback\n{output[-6000:]}"
    last = _last_line(output)
    if case in HYDRA_OWN:  # Hydra's own composition errors: the message, the options, then its hint
        assert named in output and last.startswith("Set the environment variable HYDRA_FULL_ERROR=1"), output
    else:
        assert named in last, f"{case}: the last line does not name the culprit:\n{last}"
    assert "weights_only=False" not in output  # never the advice to load untrusted pickles
    after = _snapshot(ws)
    changed = sorted(k for k, v in before.items() if after.get(k) != v)
    assert not changed, f"{case}: changed or removed {changed}"
    if module == UPSCALE:
        assert not out.exists() or not any(out.iterdir()), f"{case}: wrote {sorted(out.iterdir())}"
    assert not (tmp_path / "run" / "checkpoints").exists(), f"{case}: trained"


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)
    assert {c[1] for c in CASES} == {TRAIN, EVAL, UPSCALE, EXPORT, REPORT, PREPARE, THROUGHPUT}


def test_cli_processes_end_with_one_line(ws: Path, tmp_path: Path) -> None:
    """The same through real processes (``python -m``), whose exit status the shell sees."""
    for module, args, named in (
        (
            EVAL,
            ["model=bicubic", "scales=[1]", f"hydra.run.dir={tmp_path / 'e'}"],
            "scales=[1]: 1 is not supported",
        ),
        (
            UPSCALE,
            [
                f"input={ws}/up_bad",
                f"output={tmp_path / 'o'}",
                "model=bicubic",
                f"hydra.run.dir={tmp_path / 'u'}",
            ],
            "b.png",
        ),
        (TRAIN, [f"resume_dir={ws}/not_a_run"], "no checkpoints/last.ckpt"),
    ):
        result = run_cli(module, *args, HYDRA_FULL_ERROR="0")
        assert result.returncode == 1, result.stderr[-3000:]
        assert TRACEBACK not in result.stderr and named in result.stderr.strip().splitlines()[-1]


# --- journeys that used to go wrong -------------------------------------------------------------------


def test_ddp_on_four_processes_with_three_validation_images(tmp_path: Path) -> None:
    """The mission's own example on the default data: 3 validation images, 4 processes, a one-batch epoch."""
    from esrt_lit.evaluation import evaluate_folder

    data = make_tiny_images(tmp_path / "data")  # 3 validation images
    run = tmp_path / "run"
    result = run_cli(
        "esrt_lit.train",
        *tiny_overrides(data, epochs=1, steps=1),
        "trainer.devices=4",
        "trainer.strategy=ddp",
        "logger=none",
        f"hydra.run.dir={run}",
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = (run / "metrics.json").read_text()
    import json

    metrics = json.loads(metrics)
    assert metrics["global_step"] == 1  # every process trained one full batch
    best = evaluate_folder(data["val"], 2, model=run / "checkpoints" / "best.ckpt")
    assert metrics["test/tiny/psnr"] == pytest.approx(best["psnr"], abs=1e-6)  # exact sums, no image twice


def test_run_ending_before_validation_exits_cleanly(tmp_path: Path) -> None:
    data = make_tiny_images(tmp_path / "data")
    for extra in (["++trainer.max_steps=2"], ["+trainer.limit_val_batches=0"]):
        run = tmp_path / extra[0].split("=")[0].strip("+").replace(".", "_")
        result = run_cli(
            TRAIN, *tiny_overrides(data, epochs=1, steps=4), "logger=none", f"hydra.run.dir={run}", *extra
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert (run / "metrics.json").is_file() and TRACEBACK not in result.stderr


def test_resume_takes_the_runs_own_configuration(tmp_path: Path) -> None:
    data = make_tiny_images(tmp_path / "data")
    run = tmp_path / "run"
    assert_ok = lambda r: r.returncode == 0 or pytest.fail(r.stderr[-4000:])  # noqa: E731
    assert_ok(run_cli(TRAIN, *tiny_overrides(data, epochs=1, steps=3), "logger=none", f"hydra.run.dir={run}"))
    record = {name: (run / ".hydra" / name).read_bytes() for name in ("config.yaml", "overrides.yaml")}
    # only the change: the rest (tiny model, data, steps) comes from the run's own overrides
    result = run_cli(TRAIN, f"resume_dir={run}", "trainer.max_epochs=2")
    assert_ok(result)
    assert "trainer.max_epochs: 1 -> 2" in result.stderr + result.stdout
    assert {name: (run / ".hydra" / name).read_bytes() for name in record} == record  # the record is kept
    (resume_record,) = (run / ".hydra").glob("resume_*/overrides.yaml")
    assert (
        "trainer.max_epochs=2" in resume_record.read_text() and "model=esrt_tiny" in resume_record.read_text()
    )
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6


def test_sweep_goes_on_after_a_failing_job(tmp_path: Path) -> None:
    data = make_tiny_images(tmp_path / "data")
    sweep = tmp_path / "sweep"
    result = run_cli(
        TRAIN,
        "-m",
        *tiny_overrides(data, epochs=1, steps=2),
        "logger=none",
        "model.n_hpb=abc,1",
        f"hydra.sweep.dir={sweep}",
        HYDRA_FULL_ERROR="0",
    )
    assert result.returncode == 1 and TRACEBACK not in result.stderr
    assert "n_hpb='abc' is invalid" in (sweep / "0" / "FAILED").read_text()
    assert (sweep / "1" / "metrics.json").is_file()  # the good job ran after the bad one
    assert result.stderr.strip().splitlines()[-1] == f"error: 1 of 2 jobs of the sweep in {sweep} failed"


def test_out_of_memory_says_so_and_what_to_lower() -> None:
    from esrt_lit.cli import describe_error

    cpu = RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 106168320000 bytes")
    gpu = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 98.88 GiB")
    for err in (cpu, gpu):
        line = describe_error(err)
        assert line.startswith("out of memory (") and "data.batch_size" in line and "\n" not in line
    assert describe_error(KeyError("x")).startswith(
        "KeyError: 'x' (unexpected; ESRT_DEBUG=1 shows the traceback)"
    )


def test_every_non_hydra_command_ends_through_the_one_runner(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run_command``: the work's status (0 for None), a failure as one ``error:`` line and status 1,
    the traceback with ``ESRT_DEBUG=1``; report, bench, demo, export, data.prepare and data.throughput
    all end through it."""
    import inspect

    from esrt_lit import cli, demo, export, report
    from esrt_lit.bench import cli as bench_cli
    from esrt_lit.data import prepare, throughput

    def fail() -> None:
        raise FileNotFoundError("x.png: not found")

    monkeypatch.delenv("ESRT_DEBUG", raising=False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    assert cli.run_command(lambda: None) == 0 and cli.run_command(lambda: 3) == 3
    assert cli.run_command(fail) == 1
    assert capsys.readouterr().err == "error: x.png: not found\n"
    monkeypatch.setenv("ESRT_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="x.png"):
        cli.run_command(fail)
    for module in (report, bench_cli, demo, export, prepare, throughput):
        source = inspect.getsource(module.main)
        assert "run_command(" in source and "except" not in source, module.__name__


def test_state_dicts_load_with_their_scale_read_off_the_tensors(ws: Path, tmp_path: Path) -> None:
    """A plain state dict (``torch.save(net.state_dict())``) used to fail with "cannot infer the scale"."""
    code, output = run_command(
        EVAL,
        [
            f"ckpt_path={ws}/ckpt/plain_x2.pth",
            "scales=[2]",
            f"benchmark_root={ws}/tiny",
            "names=[val]",
            f"hydra.run.dir={tmp_path / 'eval'}",
        ],
    )
    assert code == 0, output[-3000:]
    assert '"x2"' in (tmp_path / "eval" / "results.json").read_text()
    code, output = run_command(
        UPSCALE,
        [
            f"input={ws}/up",
            f"output={tmp_path / 'up'}",
            f"ckpt_path={ws}/ckpt/plain_x2.pth",
            "scale=2",
            f"hydra.run.dir={tmp_path / 'upscale'}",
        ],
    )
    assert code == 0, output[-3000:]
    assert Image.open(tmp_path / "up" / "a.png").size == (20, 24)
