"""``fewshot-cam pretrain`` with a distillation teacher (``--teacher --distill``) and with a SAOL head
(``--head saol``), end to end on the tiny config; the SAOL model's CAM in the analysis."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fewshot_cam.analysis.attribution import attribute, classifier_scorer
from fewshot_cam.config import load_config
from fewshot_cam.models.cam import minmax_normalize, target_cam
from fewshot_cam.models.checkpoint import load_checkpoint, load_model
from fewshot_cam.models.factory import ModelConfig, build_model
from fewshot_cam.training.config import PretrainConfig
from fewshot_cam.training.objectives import SAOL_PARTS
from fewshot_cam.training.run_dir import read_metrics

CONFIGS = Path(__file__).parent.parent / "configs"
TINY = CONFIGS / "synthetic-tiny-camloss.yaml"
FAST = ("--set", "val.episodes=5")


def run_parts(record: dict, weights: dict[str, float]) -> float:
    """The logged loss rebuilt from the logged parts: L = ce + alpha cam + sum_k w_k part_k."""
    return record["ce"] + record["alpha"] * record["cam"] + sum(w * record[k] for k, w in weights.items())


@pytest.fixture(scope="module")
def saol_run(tmp_path_factory):
    """Two uninterrupted epochs of the tiny CAM-loss config with a SAOL head."""
    from fewshot_cam.cli import main

    out = tmp_path_factory.mktemp("saol") / "run"
    assert main(["pretrain", "--config", str(TINY), "--head", "saol", "--out", str(out), *FAST]) == 0
    return out


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory):
    """A one-epoch tiny CE model, the teacher."""
    from fewshot_cam.cli import main

    out = tmp_path_factory.mktemp("teacher") / "run"
    assert main(["pretrain", "--config", str(TINY), "--loss", "ce", "--epochs", "1", "--out", str(out), *FAST]) == 0
    return out / "last.pt"


@pytest.mark.parametrize("name, head, mode", [
    ("synthetic-conv4-saol.yaml", "saol", "none"), ("synthetic-conv4-ccm.yaml", "linear", "ccm"),
    ("mini-imagenet-resnet12-saol.yaml", "saol", "none"),
    ("mini-imagenet-conv4-ccm-from-resnet12.yaml", "linear", "ccm"),
])
def test_distill_and_saol_configs_load(name, head, mode):
    cfg = load_config(PretrainConfig, CONFIGS / name)
    assert (cfg.model.head, cfg.distill.mode, cfg.loss.loss) == (head, mode, "ce")
    assert mode == "none" or cfg.distill.teacher.endswith("camloss/best.pt")


def test_saol_run_logs_its_parts_and_saves_a_saol_model(saol_run):
    records = read_metrics(saol_run / "metrics.jsonl")
    saved = load_config(PretrainConfig, saol_run / "config.yaml").saol
    weights = {
        "self_distill": saved.self_distill,
        "aux_ce": saved.aux_ce,
        "cutmix_ce": saved.cutmix_ce,
        "spatial_ce": saved.spatial_ce,
        "paste": saved.paste,
        "consistency": saved.consistency,
    }
    assert set(weights) == set(SAOL_PARTS)
    for r in records:
        assert all(r[k] > 0 for k in SAOL_PARTS)  # cutmix_prob 1: every step mixes
        assert r["loss"] == pytest.approx(run_parts(r, weights), rel=1e-4)
    model, ckpt = load_model(saol_run / "best.pt")
    assert ckpt["model_config"]["head"] == "saol" and type(model.head).__name__ == "SAOLHead"


def test_saol_resume_ends_where_an_uninterrupted_run_ends(saol_run, tmp_path, interrupt_pretrain, cli):
    out = tmp_path / "run"
    interrupt_pretrain(2)
    assert cli("pretrain", "--config", TINY, "--head", "saol", "--out", out, *FAST)[0] == 130
    interrupt_pretrain(None)
    assert cli("pretrain", "--config", TINY, "--head", "saol", "--out", out, *FAST, "--resume")[0] == 0
    a, b = load_checkpoint(saol_run / "last.pt")["model"], load_checkpoint(out / "last.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    code, _, err = cli("pretrain", "--config", TINY, "--out", out, *FAST, "--resume")  # linear head now
    assert code == 2 and "model.head" in err


@pytest.mark.parametrize("mode", ["kd", "ccm", "zk-at"])
def test_distillation_run_logs_parts_and_leaves_the_teacher_alone(mode, teacher_path, tmp_path, monkeypatch, cli):
    from fewshot_cam.cli import pretrain as command
    from fewshot_cam.training.pretrain import fit

    states = []

    def recording_fit(*args, **kwargs):
        states.append(fit(*args, **kwargs))
        return states[-1]

    monkeypatch.setattr(command, "fit", recording_fit)
    out = tmp_path / mode
    code, stdout, _ = cli("pretrain", "--config", TINY, "--loss", "ce", "--teacher", teacher_path, "--distill", mode,
                          "--out", out, *FAST)
    assert code == 0 and f"{mode} from {teacher_path}" in stdout
    records = read_metrics(out / "metrics.jsonl")
    parts = {"kd"} | ({mode} if mode != "kd" else set())
    assert all(parts <= set(r) and r["kd"] > 0 for r in records)
    assert all(r["loss"] == pytest.approx(run_parts(r, dict.fromkeys(parts, 1.0)), rel=1e-4) for r in records)
    teacher = states[0].teacher
    saved = load_checkpoint(teacher_path)["model"]
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(v, saved[k]) for k, v in teacher.state_dict().items())  # BN statistics included
    assert not any(p is q for p in teacher.parameters() for g in states[0].optimizer.param_groups for q in g["params"])


def test_distill_without_teacher_exits_2(tmp_path, cli):
    code, _, err = cli("pretrain", "--config", TINY, "--distill", "ccm", "--out", tmp_path / "o")
    assert code == 2 and "distill.teacher" in err


def test_teacher_with_other_classes_exits_2(teacher_path, tmp_path, cli):
    code, _, err = cli("pretrain", "--config", TINY, "--teacher", teacher_path, "--distill", "kd",
                       "--set", "data.train_split=val", "--out", tmp_path / "o", *FAST)
    assert code == 2 and "classes" in err


def test_cam_of_a_saol_model_is_its_target_spatial_logits():
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="tiny", head="saol"), 5).eval()
    g = torch.Generator().manual_seed(1)
    x, target = torch.rand(3, 3, 16, 16, generator=g), torch.tensor([4, 0, 2])
    maps = attribute("cam", classifier_scorer(model), x, target)  # (3, 16, 16)
    for i in range(3):  # oracle: one image at a time, by hand
        with torch.no_grad():
            s = model.head.forward_all(model.forward_stages(x[i : i + 1]))["spatial_logits"][0, target[i]]
        up = F.interpolate(s[None, None], size=(16, 16), mode="bilinear", align_corners=False)[0, 0]
        assert torch.allclose(maps[i], (up - up.min()) / (up.max() - up.min()), atol=1e-5)


def test_cam_of_a_linear_model_is_still_the_weight_cam():
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="tiny"), 5).eval()
    x, target = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2)), torch.tensor([1, 3])
    with torch.no_grad():
        raw = target_cam(model.forward_features(x), model.head.weight, target)  # (2, h, w)
    up = F.interpolate(raw[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(attribute("cam", classifier_scorer(model), x, target), minmax_normalize(up), atol=1e-5)
