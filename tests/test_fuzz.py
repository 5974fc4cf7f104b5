"""Bad input to every command: exit code 2, one line on stderr naming the value and/or the path, no traceback.

Each case is a command line (``{name}`` stands for a shared fixture file, see ``files``) and the
strings its error line must contain. Almost every case fails before any image is decoded or any step
is trained; the few that get further use the 16-pixel synthetic data and a one-epoch tiny checkpoint.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).parent.parent
TINY = ROOT / "configs" / "synthetic-tiny-camloss.yaml"


class Runs:
    """A pickle whose __reduce__ calls ``fn(arg)`` when loaded."""

    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


def imagefolder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for cls in ("a", "b", "c"):
            (root / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def files(tmp_path_factory) -> dict[str, str]:
    """The shared fixtures: a tiny checkpoint, an episode file, an imagefolder, and bad files of each kind."""
    from fewshot_cam.cli import main

    d = tmp_path_factory.mktemp("fuzz")
    run = d / "run"
    assert main(["pretrain", "--config", str(TINY), "--out", str(run), "--set", "optim.epochs=1",
                 "--set", "optim.steps_per_epoch=2", "--set", "val.episodes=5", "--set", "run.progress=false"]) == 0
    episodes = d / "episodes.json"
    assert main(["episodes", "make", "--dataset", "synthetic", "--split", "test", "--ways", "5", "--shots", "1",
                 "--queries", "5", "--n", "10", "--image-size", "16", "--out", str(episodes)]) == 0
    result = d / "result.json"
    assert main(["eval", "--checkpoint", str(run / "best.pt"), "--episode-file", str(episodes), "--json", str(result),
                 "--methods", "protonet"]) == 0
    (d / "file").write_text("not a folder\n")
    (d / "empty").mkdir()
    (d / "latin1.yaml").write_bytes(b"optim:\n  lr: 0.1 # caf\xe9\n")
    (d / "broken.yaml").write_text("optim: [1, 2\n")
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "garbage.pt").write_bytes(b"\x00" * 100)
    (d / "junk.pt").write_bytes(b"junk\n")  # torch.load raises KeyError on it
    (d / "garbage.json").write_text("{not json")
    (d / "other.json").write_text(json.dumps({"format": "something-else/1"}))
    (d / "latin1.json").write_bytes(b'{"format": "caf\xe9"}')
    (d / "list.json").write_text("[1, 2]")
    (d / "masks.npz").write_bytes(b"PK not a zip")
    csv = d / "csv"
    (csv / "images").mkdir(parents=True)
    for split in ("train", "val", "test"):
        (csv / f"{split}.csv").write_bytes(b"filename,label\na1.jpg,\xff\n")
    evil = d / "evil"
    evil.mkdir()
    (evil / "mini-imagenet-cache-train.pkl").write_bytes(pickle.dumps(
        {"image_data": np.zeros((2, 8, 8, 3), np.uint8), "class_dict": {"a": Runs(os.system, f"touch {d}/ran")}}))
    return {"ckpt": str(run / "best.pt"), "run": str(run), "ep": str(episodes), "result": str(result),
            "folder": str(imagefolder(d / "if")),
            "d": str(d), "tiny": str(TINY)}


EVAL = "--checkpoint {ckpt} --episodes 5 --ways 5 --shots 1 --queries 5"
CAM = "cam --checkpoint {ckpt} --n 4 --out {d}/cam"
ABLATE = "ablate --checkpoint {ckpt} --episodes 5 --ways 5 --shots 1 --queries 5"
PRE = "pretrain --config {tiny} --out {d}/never"
META = "metatrain --checkpoint {ckpt} --out {d}/never"
SHOW = "data show --dataset synthetic --split test --out {d}/g.png --image-size 16"
MAKE = "episodes make --dataset synthetic --split test --n 5 --image-size 16 --out {d}/e.json"

# (command line, strings the one error line holds)
CASES: list[tuple[str | list[str], list[str]]] = [
    # ---- usage errors (argparse), one line
    ("nope", ["invalid choice", "'nope'"]),
    ("data", ["data", "required"]),
    ("data info", ["--dataset", "required"]),
    ("data info --dataset synthetic --image-size abc", ["--image-size", "'abc'"]),
    ("data synth --out {d}/s --images-per-class x", ["--images-per-class", "'x'"]),
    ("data boxes --dataset cub --root x --imagenet-train x --boxes x --split train --out x.npz", ["'cub'"]),
    ("data boxes-from-masks --split test --out {d}/b.npz --shape star", ["--shape", "'star'"]),
    ("episodes", ["required"]),
    ("episodes make --dataset synthetic --out x.json --ways five", ["--ways", "'five'"]),
    ("pretrain --epochs x", ["--epochs", "'x'"]),
    ("pretrain --backbone vgg99", ["--backbone", "'vgg99'"]),
    ("pretrain --loss focal", ["--loss", "'focal'"]),
    ("metatrain --sampler magic", ["--sampler", "'magic'"]),
    ("eval", ["no --checkpoint given", "no finished run"]),
    ("eval --checkpoint {ckpt} --episodes 5 --episode-file {ep}", ["--episode-file", "not allowed"]),
    ("eval --checkpoint {ckpt} --lr 3", ["unrecognized", "--lr"]),
    ("cam --checkpoint {ckpt} --out {d}/c --method magic", ["--method", "'magic'"]),
    ("ablate --checkpoint {ckpt} --fill glitter", ["--fill", "'glitter'"]),
    ("ablate --checkpoint {ckpt} --masks nowhere", ["--masks", "'nowhere'"]),
    ("report --csv", ["--csv", "expected one argument"]),
    # ---- data info / synth / show / boxes
    ("data info --dataset imaginary", ["imaginary"]),
    ("data info --dataset mini-imagenet --root {d}/missing", ["{d}/missing"]),
    ("data info --dataset mini-imagenet --root {d}/file", ["{d}/file"]),
    ("data info --dataset mini-imagenet --root {d}/empty", ["{d}/empty"]),
    ("data info --dataset imagefolder --root {d}/empty", ["{d}/empty"]),
    ("data info --dataset cub --root {d}/empty", ["{d}/empty"]),
    ("data info --dataset synthetic --image-size 0", ["--image-size", "got 0"]),
    ("data info --dataset synthetic --image-size -5", ["--image-size", "got -5"]),
    ("data info --dataset synthetic --set data.crop=diagonal", ["data.crop", "diagonal"]),
    ("data info --dataset synthetic --set data.nope=1", ["data.nope"]),
    ("data info --dataset synthetic --set optim.lr=1", ["--set", "data"]),
    ("data info --dataset synthetic --set justtext", ["key=value", "justtext"]),
    ("data info --dataset synthetic --set data.segmentation_threshold=2", ["segmentation_threshold", "got 2"]),
    ("data info --dataset mini-imagenet --root {d}/csv", ["train.csv", "offset"]),
    ("data info --dataset mini-imagenet --root {d}/evil", ["mini-imagenet-cache-train.pkl", "posix.system"]),
    ("data synth --out {d}/s --seed -1", ["seed", "got -1"]),
    ("data synth --out {d}/s --image-size 4", ["image_size", "got 4"]),
    ("data synth --out {d}/s --images-per-class 0", ["images_per_class", "got 0"]),
    ("data synth --out {d}/s --shortcut-rate 1.5", ["shortcut_rate", "got 1.5"]),
    ("data synth --out {d}/s --shortcut-rate -0.1", ["shortcut_rate", "got -0.1"]),
    ("data synth --out {d}/s --shortcut-rate nan", ["shortcut_rate", "got nan"]),
    ("data synth --out {d}/file --images-per-class 1", ["{d}/file", "cannot write"]),
    ("data synth --out {d}/file/sub --images-per-class 1", ["{d}/file/sub", "cannot write"]),
    (SHOW.replace("--split test", "--split nope"), ["nope"]),
    (SHOW + " --n-classes 0", ["--n-classes", "got 0"]),
    (SHOW + " --per-class -2", ["--per-class", "got -2"]),
    (SHOW + " --seed -1", ["--seed", "got -1"]),
    (SHOW.replace("16", "2"), ["--image-size", "got 2"]),
    (SHOW + " --masks {d}/none.npz", ["{d}/none.npz"]),
    (SHOW + " --masks {d}/masks.npz", ["{d}/masks.npz"]),
    (SHOW.replace("{d}/g.png", "{d}/file/g.png"), ["{d}/file/g.png", "cannot write"]),
    (SHOW.replace("{d}/g.png", "{d}/empty"), ["{d}/empty", "folder"]),
    ("data boxes --dataset mini-imagenet --root {d}/empty --imagenet-train {d}/empty --boxes {d}/empty "
     "--split train --out {d}/m.txt", ["{d}/m.txt", ".npz"]),
    ("data boxes --dataset mini-imagenet --root {d}/empty --imagenet-train {d}/empty --boxes {d}/empty "
     "--split train --out {d}/m.npz --workers 0", ["workers", "got 0"]),
    ("data boxes --dataset mini-imagenet --root {d}/empty --imagenet-train {d}/missing --boxes {d}/empty "
     "--split train --out {d}/m.npz", ["{d}/missing"]),
    ("data boxes --dataset mini-imagenet --root {d}/empty --imagenet-train {d}/empty --boxes {d}/empty "
     "--split train --out {d}/m.npz --image-size 0", ["image_size", "got 0"]),
    ("data boxes-from-masks --split test --out {d}/b.txt", ["{d}/b.txt", ".npz"]),
    ("data boxes-from-masks --split test --out {d}/b.npz --image-size 3", ["--image-size", "got 3"]),
    ("data boxes-from-masks --dataset imagefolder --root {folder} --split test --out {d}/b.npz --image-size 16",
     ["no true masks"]),
    # ---- episodes make / info
    (MAKE + " --ways 0", ["--ways", "got 0"]),
    (MAKE + " --ways 1", ["--ways", "got 1"]),
    (MAKE + " --ways 500", ["500"]),
    (MAKE + " --shots 0", ["--shots", "got 0"]),
    (MAKE + " --shots -1", ["--shots", "got -1"]),
    (MAKE + " --queries 0", ["--queries", "got 0"]),
    (MAKE.replace("--n 5", "--n 0"), ["n", "got 0"]),
    (MAKE.replace("--n 5", "--n 1000000000000"), ["1000000000000", "memory"]),
    (MAKE + " --seed -3", ["seed", "got -3"]),
    (MAKE.replace("--image-size 16", "--image-size 0"), ["--image-size", "got 0"]),
    (MAKE.replace("{d}/e.json", "{d}/file/e.json"), ["{d}/file/e.json", "cannot write"]),
    (MAKE.replace("--split test", "--split exam"), ["exam"]),
    ("episodes info {d}/missing.json", ["{d}/missing.json"]),
    ("episodes info {d}/garbage.json", ["{d}/garbage.json"]),
    ("episodes info {d}/latin1.json", ["{d}/latin1.json"]),
    ("episodes info {d}/list.json", ["{d}/list.json"]),
    ("episodes info {d}/empty", ["{d}/empty"]),
    # ---- pretrain: every config section, flags, files, run folders
    (PRE + " --epochs 0", ["optim.epochs", "got 0"]),
    (PRE + " --epochs -1", ["optim.epochs", "got -1"]),
    (PRE + " --lr 0", ["optim.lr", "got 0"]),
    (PRE + " --lr -0.1", ["optim.lr", "got -0.1"]),
    (PRE + " --lr nan", ["optim.lr", "got nan"]),
    (PRE + " --set optim.lr=1e400", ["optim.lr", "got inf"]),
    (PRE + " --batch-size 0", ["optim.batch_size", "got 0"]),
    (PRE + " --seed -1", ["run.seed", "got -1"]),
    (PRE + " --image-size 4", ["data.image_size", "got 4"]),
    (PRE + " --device tpu", ["device", "tpu"]),
    (PRE + " --device cuda:x", ["device", "cuda:x"]),
    (PRE + " --set optim.momentum=-0.9", ["optim.momentum must be in [0, 1], got -0.9"]),
    (PRE + " --set optim.weight_decay=-1", ["optim.weight_decay", "got -1"]),
    (PRE + " --set optim.gamma=0", ["optim.gamma", "got 0"]),
    (PRE + " --set optim.milestones=[-1]", ["optim.milestones", "got -1"]),
    (PRE + " --set optim.lr_warmup_epochs=-1", ["optim.lr_warmup_epochs", "got -1"]),
    (PRE + " --set optim.steps_per_epoch=-1", ["optim.steps_per_epoch", "got -1"]),
    (PRE + " --set optim.nesterov=true --set optim.momentum=0", ["optim.nesterov", "momentum"]),
    (PRE + " --set optim.schedule=linear", ["optim.schedule", "linear"]),
    (PRE + " --set run.log_every=0", ["run.log_every must be >= 1, got 0"]),
    (PRE + " --set run.out=", ["run.out"]),
    (PRE + " --set run.amp=maybe", ["run.amp", "maybe"]),
    (PRE + " --set augment.hflip=1.5", ["augment.hflip", "got 1.5"]),
    (PRE + " --set augment.scale=[0.5,0.1]", ["augment.scale", "[0.5, 0.1]"]),
    (PRE + " --set augment.scale=[0.1,2]", ["augment.scale", "got 2"]),
    (PRE + " --set augment.ratio=[0,1]", ["augment.ratio", "got 0"]),
    (PRE + " --set augment.brightness=-1", ["augment.brightness", "got -1"]),
    (PRE + " --set augment.padding=-4", ["augment.padding", "got -4"]),
    (PRE + " --set augment.crop=zoom", ["augment.crop", "zoom"]),
    (PRE + " --set val.ways=1", ["val.ways", "got 1"]),
    (PRE + " --set val.shots=0", ["val.shots", "got 0"]),
    (PRE + " --set val.queries=0", ["val.queries", "got 0"]),
    (PRE + " --set val.episodes=0", ["val.episodes", "got 0"]),
    (PRE + " --set val.every=-1", ["val.every", "got -1"]),
    (PRE + " --set val.seed=-1", ["val.seed", "got -1"]),
    (PRE + " --set val.episodes=100000000000", ["100000000000", "memory"]),
    (PRE + " --set val.batch_size=0", ["val.batch_size", "got 0"]),
    (PRE + " --set val.metric=manhattan", ["val.metric", "manhattan"]),
    (PRE + " --set loss.alpha=-1", ["loss.alpha", "got -1"]),
    (PRE + " --set loss.warmup_epochs=-1", ["loss.warmup_epochs", "got -1"]),
    (PRE + " --set loss.distance=l3", ["l3"]),
    (PRE + " --set saol.cutmix_prob=2", ["saol.cutmix_prob", "got 2"]),
    (PRE + " --set saol.tau=0", ["saol.tau", "got 0"]),
    (PRE + " --set saol.self_distill=-1", ["saol.self_distill", "got -1"]),
    (PRE + " --set distill.tau=0 --distill kd --teacher {ckpt}", ["distill.tau", "got 0"]),
    (PRE + " --set distill.beta=-2 --distill kd --teacher {ckpt}", ["distill.beta", "got -2"]),
    (PRE + " --distill kd", ["distill", "teacher"]),
    (PRE + " --distill kd --teacher {d}/missing.pt", ["{d}/missing.pt"]),
    (PRE + " --distill kd --teacher {d}/garbage.pt", ["{d}/garbage.pt"]),
    (PRE + " --set data.dataset=imaginary", ["imaginary"]),
    (PRE + " --set data.train_split=", ["data.train_split"]),
    (PRE + " --set model.pool=max", ["model.pool", "max"]),
    (PRE + " --set model.head=mlp", ["mlp"]),
    (PRE + " --set train.select=worst", ["train.select", "worst"]),
    (PRE + " --set optim.lrr=1", ["optim.lrr"]),
    ("pretrain --config {d}/missing.yaml", ["{d}/missing.yaml"]),
    ("pretrain --config {d}/latin1.yaml", ["{d}/latin1.yaml", "UTF-8"]),
    ("pretrain --config {d}/broken.yaml", ["{d}/broken.yaml", "YAML"]),
    ("pretrain --config {d}/list.yaml", ["{d}/list.yaml", "mapping"]),
    ("pretrain --config {d}/empty", ["{d}/empty"]),
    (PRE + " --seeds 1,1", ["--seeds", "1,1"]),
    (PRE + " --seeds -1", ["--seeds", "got -1"]),
    (PRE + " --seeds a,b", ["--seeds", "a,b"]),
    ("pretrain --config {tiny} --out {d}/file", ["{d}/file", "file"]),
    ("pretrain --config {tiny} --out {d}/file/sub", ["{d}/file/sub"]),
    ("pretrain --config {tiny} --out {d}/empty --resume", ["last.pt"]),
    ("pretrain --config {tiny} --out {run}", ["{run}", "--resume"]),
    ("pretrain --config {tiny} --out {run} --resume --set model.backbone=conv4", ["model.backbone", "{run}"]),
    ("pretrain --config {tiny} --out {d}/never --set optim.batch_size=100000", ["batch_size 100000", "3840 images"]),
    # ---- metatrain
    ("metatrain --out {d}/never", ["checkpoint"]),
    ("metatrain --checkpoint {d}/missing.pt --out {d}/never", ["{d}/missing.pt"]),
    ("metatrain --checkpoint {d}/garbage.pt --out {d}/never", ["{d}/garbage.pt"]),
    (META + " --ways 0", ["ways", "got 0"]),
    (META + " --ways 1", ["ways", "got 1"]),
    (META + " --shots 0", ["shots", "got 0"]),
    (META + " --queries -1", ["queries", "got -1"]),
    (META + " --set tasks_per_step=0", ["tasks_per_step=0"]),
    (META + " --set episodes_per_epoch=0", ["episodes_per_epoch", "got 0"]),
    (META + " --epochs 0", ["optim.epochs", "got 0"]),
    (META + " --lr -1", ["optim.lr", "got -1"]),
    (META + " --seed -7", ["run.seed", "got -7"]),
    (META + " --device tpu", ["device", "tpu"]),
    (META + " --set model.backbone=resnet12", ["model"]),
    (META + " --set run.log_every=0", ["run.log_every", "got 0"]),
    (META + " --config {d}/latin1.yaml", ["{d}/latin1.yaml", "UTF-8"]),
    (META + " --ways 500", ["500"]),
    (META + " --set episodes_per_epoch=100000000000 --set tasks_per_step=1", ["100000000000", "memory"]),
    # ---- eval
    ("eval --checkpoint {d}/missing.pt", ["{d}/missing.pt"]),
    ("eval --checkpoint {d}/garbage.pt", ["{d}/garbage.pt"]),
    ("eval --checkpoint {d}/empty", ["{d}/empty"]),
    ("eval --checkpoint {d}/junk.pt", ["{d}/junk.pt", "damaged"]),
    ("cam --checkpoint {d}/junk.pt --out {d}/cam", ["{d}/junk.pt", "damaged"]),
    ("eval " + EVAL + " --ways 0", ["ways", "got 0"]),
    ("eval " + EVAL + " --ways 1", ["ways", "got 1"]),
    ("eval " + EVAL + " --shots 0", ["shots", "got 0"]),
    ("eval " + EVAL + " --queries 0", ["queries", "got 0"]),
    ("eval --checkpoint {ckpt} --episodes 0", ["episodes", "got 0"]),
    ("eval " + EVAL + " --seed -1", ["seed", "got -1"]),
    ("eval " + EVAL + " --methods nope", ["nope"]),
    (["eval", "--checkpoint", "{ckpt}", "--episodes", "5", "--methods", ""], ["method"]),
    ("eval " + EVAL + " --split exam", ["exam"]),
    ("eval " + EVAL + " --batch-size 0", ["batch_size", "got 0"]),
    ("eval " + EVAL + " --image-size 4", ["image_size", "got 4"]),
    ("eval " + EVAL + " --device tpu", ["device", "tpu"]),
    ("eval " + EVAL + " --device cuda:7", ["cuda:7"]),
    ("eval " + EVAL + " --json {d}/file/r.json", ["{d}/file/r.json", "cannot write"]),
    ("eval " + EVAL + " --json {d}/empty", ["{d}/empty", "folder"]),
    ("eval --checkpoint {ckpt} --episode-file {d}/missing.json", ["{d}/missing.json"]),
    ("eval --checkpoint {ckpt} --episode-file {d}/garbage.json", ["{d}/garbage.json"]),
    ("eval --checkpoint {ckpt} --episode-file {ep} --ways 3", ["--ways 3", "{ep}"]),
    ("eval " + EVAL + " --backbone resnet12", ["resnet12", "{ckpt}"]),
    ("eval " + EVAL + " --ways 500", ["500"]),
    ("eval " + EVAL + " --dataset imaginary", ["imaginary"]),
    ("eval " + EVAL + " --set data.crop=diagonal", ["data.crop", "diagonal"]),
    # ---- report
    ("report", ["result"]),
    ("report {d}/missing.json", ["{d}/missing.json"]),
    ("report {d}/garbage.json", ["{d}/garbage.json"]),
    ("report {d}/other.json", ["{d}/other.json", "something-else/1"]),
    ("report {d}/latin1.json", ["{d}/latin1.json"]),
    ("report {d}/list.json", ["{d}/list.json"]),
    ("report --group bad", ["--group", "bad"]),
    ("report --group x={d}/nomatch*.json", ["{d}/nomatch*.json"]),
    ("report {result} --csv {d}/file/t.csv", ["{d}/file/t.csv", "a file is in the way"]),
    ("report {result} --json {d}/file/t.json", ["{d}/file/t.json", "a file is in the way"]),
    ("report {result} --json {d}/empty", ["{d}/empty", "a folder is in the way"]),
    ("report {result} --baseline {d}/garbage.json", ["--baseline", "{d}/garbage.json"]),
    ("report {result} {d}/garbage.json", ["{d}/garbage.json"]),
    ("report {result} --group x={result}", ["not both"]),
    ("report --group x={result} --group x={result}", ["'x'", "twice"]),
    ("report --group x={result} --csv {d}/t.csv", ["--csv"]),
    # ---- cam
    (CAM.replace("--n 4", "--n 0"), ["--images", "got 0"]),
    (CAM + " --pictures -1", ["--pictures", "got -1"]),
    (CAM + " --threshold 2", ["--cam-threshold", "got 2"]),  # an old spelling: the error names the new
    (CAM + " --batch-size 0", ["--image-batch", "got 0"]),
    (CAM + " --support-shots 0", ["--support-shots", "got 0"]),
    (CAM + " --faithfulness --steps 0", ["--steps", "got 0"]),
    (CAM + " --seed -1", ["--seed", "got -1"]),
    (CAM + " --image-size 4", ["--image-size", "got 4"]),
    (CAM + " --device tpu", ["device", "tpu"]),
    (CAM + " --masks {d}/none.npz", ["{d}/none.npz"]),
    (CAM.replace("{d}/cam", "{d}/file"), ["{d}/file", "cannot write"]),
    ("cam --checkpoint {d}/missing.pt --out {d}/cam", ["{d}/missing.pt"]),
    (CAM + " --split exam", ["exam"]),
    # ---- ablate
    (ABLATE + " --mask-threshold 1.5", ["mask threshold", "got 1.5"]),
    (ABLATE + " --mask-threshold 0", ["mask threshold", "got 0"]),
    (ABLATE + " --cam-batch-size 0", ["--image-batch", "got 0"]),
    (ABLATE + " --ways 0", ["ways", "got 0"]),
    (ABLATE + " --seed -1", ["seed", "got -1"]),
    ("ablate --checkpoint {ckpt} --episodes 0", ["episodes", "got 0"]),
    (ABLATE + " --json {d}/file/a.json", ["{d}/file/a.json", "cannot write"]),
    (ABLATE + " --plot {d}/file/a.png", ["{d}/file/a.png", "cannot write"]),
    (ABLATE + " --masks cam --mask-model {d}/missing.pt", ["{d}/missing.pt"]),
    (ABLATE + " --masks {d}/none.npz", ["{d}/none.npz"]),
    (ABLATE + " --device tpu", ["device", "tpu"]),
    ("ablate --checkpoint {d}/garbage.pt", ["{d}/garbage.pt"]),
]


def case_id(case) -> str:
    argv = case[0] if isinstance(case[0], str) else " ".join(case[0])
    return argv.replace("{d}/", "").replace(" ", "_")[:90]


def test_the_table_is_large_and_covers_every_command():
    commands = {" ".join((c if isinstance(c, list) else c.split())[:2]) for c, _ in CASES}
    wanted = {"data info", "data synth", "data show", "data boxes", "episodes make", "episodes info"}
    assert len(CASES) >= 100 and wanted <= commands
    assert {c.split()[0] for c in commands} >= {"pretrain", "metatrain", "eval", "report", "cam", "ablate"}


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_bad_input_is_one_clean_line(case, files, capsys, tmp_path, monkeypatch):
    from fewshot_cam.cli import main

    monkeypatch.chdir(tmp_path)  # no runs/ here: bare commands find no latest run

    argv, expected = case
    argv = [part.format(**files) for part in (argv.split() if isinstance(argv, str) else argv)]
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fewshot-cam: error:"), err
    assert "Traceback" not in err
    for part in expected:
        assert part.format(**files) in lines[0], (part, lines[0])
    assert not (Path(files["d"]) / "ran").exists()  # no pickle ran code
    assert not (Path(files["d"]) / "never").exists() or not any((Path(files["d"]) / "never").glob("*.pt"))


def test_check_range_bounds_by_hand():
    from fewshot_cam.errors import UserError, check_range

    assert check_range("k", 0, 0, None) == 0 and check_range("k", 1.0, 0, 1) == 1.0
    for value, low, high, opens, message in [
        (0, 0, None, (True, False), "k must be > 0, got 0"),
        (1, 0, 1, (False, True), "k must be in [0, 1), got 1"),
        (-0.9, 0, 1, (False, False), "k must be in [0, 1], got -0.9"),
        (float("nan"), 0, None, (False, False), "k must be >= 0, got nan"),
        (float("inf"), 0, None, (False, False), "k must be >= 0, got inf"),
        (True, 0, None, (False, False), "k must be >= 0, got True"),
        (-1, 0, 2**63 - 1, (False, False), "k must be in [0, 2**63 - 1], got -1"),
    ]:
        with pytest.raises(UserError) as info:
            check_range("k", value, low, high, low_open=opens[0], high_open=opens[1])
        assert str(info.value) == message


def test_config_sections_check_themselves_when_built_in_python():
    from fewshot_cam.errors import UserError
    from fewshot_cam.losses.saol import SAOLLossConfig
    from fewshot_cam.training.augment import AugmentConfig
    from fewshot_cam.training.config import RunConfig
    from fewshot_cam.training.optim import OptimConfig
    from fewshot_cam.training.validation import ValConfig

    for build, key in [(lambda: OptimConfig(momentum=-0.9), "optim.momentum"), (lambda: RunConfig(seed=-1), "run.seed"),
                       (lambda: RunConfig(device="tpu"), "run.device"), (lambda: ValConfig(ways=1), "val.ways"),
                       (lambda: AugmentConfig(hflip=2.0), "augment.hflip"),
                       (lambda: SAOLLossConfig(cutmix_prob=-1.0), "saol.cutmix_prob")]:
        with pytest.raises(UserError, match=key):
            build()
    assert OptimConfig(momentum=0.0, weight_decay=0.0).momentum == 0.0  # the bounds themselves are allowed
