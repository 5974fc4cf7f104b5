# ruff: noqa: B023  (every lambda below runs inside the iteration that made it)
"""Side-by-side timings of fewshot-cam against the libraries a user would otherwise pick, on the same
features, episodes and images; each line: our time, the peer's, the ratio, and the episodes (or images)
whose results differ. Medians of interleaved repeats. Needs the ``peers`` extra (easyfsl, torchcam) and
the ``test`` extra (scikit-learn, grad-cam); learn2learn via scripts/setup.sh. Not part of the tests.

    OMP_NUM_THREADS=2 python scripts/bench_peers.py [--quick] [--device cpu|cuda] [--only fewshot,solvers,cam,memory]
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from oracles import chen_finetune  # noqa: E402  (Chen's per-episode recipe, as tests/oracles.py writes it)

from fewshot_cam.bench.evaluation import plain_protonet_loop  # noqa: E402
from fewshot_cam.fewshot.episodic import episode_seeds, predict_episodes  # noqa: E402


def timed(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Run every fn ``repeats`` times, interleaved -> ({name: median seconds}, {name: last result})."""
    times, out = {k: [] for k in fns}, {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            out[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}, out


def line(what: str, ours: float, peer_name: str, peer: float, differ: int | str, unit: float = 1e3) -> None:
    """One table row; times in seconds, printed times ``unit`` (1e3: ms, 1e6: us)."""
    cells = (what, f"{ours * unit:.1f}", peer_name, f"{peer * unit:.1f}", f"{peer / ours:.2f}x", differ)
    print("| " + " | ".join(map(str, cells)) + " |", flush=True)


def features_and_episodes(ways, shots, episodes, dim=640, classes=20, per_class=600, queries=15, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(classes, 1, dim, generator=g)
    feats = (means + 2.0 * torch.randn(classes, per_class, dim, generator=g)).relu().reshape(-1, dim)
    idx = torch.stack([torch.stack([c * per_class + torch.randperm(per_class, generator=g)[: shots + queries]
                                    for c in torch.randperm(classes, generator=g)[:ways]]) for _ in range(episodes)])
    return feats, idx


def ours(method, feats, idx, shots):
    """What ``fewshot-cam eval`` runs: chunks sized by the memory budget, rows gathered by index."""
    return predict_episodes(feats, idx, shots, [method], seed=0)[method].cpu()


def per_episode(fn, feats, idx, shots, seeds):
    out = []
    for e, ep in enumerate(idx):
        out.append(fn(feats[ep[:, :shots]], feats[ep[:, shots:]].reshape(-1, feats.shape[1]), seeds[e]))
    return torch.stack(out).cpu()


def easyfsl_protonet():
    from easyfsl.methods import PrototypicalNetworks

    model = PrototypicalNetworks(torch.nn.Identity())

    def run(s, q, _):
        model.process_support_set(s.reshape(-1, s.shape[-1]), torch.arange(s.shape[0]).repeat_interleave(s.shape[1]))
        return model(q).argmax(1)
    return run


def sklearn_logreg(s, q, _, tol=1e-4, solver="lbfgs"):
    from sklearn.linear_model import LogisticRegression

    N, K, D = s.shape
    x = F.normalize(s.reshape(-1, D).double(), dim=-1).numpy()
    clf = LogisticRegression(C=1.0, max_iter=1000, tol=tol, solver=solver).fit(x, np.repeat(np.arange(N), K))
    return torch.from_numpy(clf.predict(F.normalize(q.double(), dim=-1).numpy()))


def bench_fewshot(settings, episodes, repeats, methods=("protonet", "logreg", "baseline", "baseline++"),
                  device=torch.device("cpu")):
    feats, idx = features_and_episodes(5, 1, 2)  # first calls (thread pools, autograd) are not timed
    for method in methods:
        ours(method, feats, idx, 1)
    chen_finetune(feats[idx[0, :, :1]], feats[idx[0, :, 1:]].reshape(-1, feats.shape[1]), 0, False)
    print("| evaluator, ways-shots | ours us/episode | peer | peer us/episode | ratio | episodes differing |")
    print("|---|---|---|---|---|---|")
    for ways, shots in settings:
        for method in methods:
            # Fine-tuning: ours over as many episodes as logreg (its chunks grow to tens of episodes), Chen's
            # loop over the first few (about a second an episode); per-episode times compared.
            n = episodes if method == "protonet" else max(20, episodes // 5)
            n_peer = max(4, episodes // 50) if method in ("baseline", "baseline++") else n
            feats, idx = features_and_episodes(ways, shots, n)
            if method == "protonet":  # the fitted peers (sklearn, Chen's loop) run on the CPU
                feats, idx = feats.to(device), idx.to(device)
            seeds = episode_seeds(0, range(n))
            peers = {"loop": lambda: plain_protonet_loop(feats, idx, shots).cpu(),
                     "easyfsl": lambda: per_episode(easyfsl_protonet(), feats, idx, shots, seeds)}
            if method == "logreg":
                peers = {"sklearn lbfgs": lambda: per_episode(sklearn_logreg, feats, idx, shots, seeds)}
            elif method != "protonet":
                cos = method == "baseline++"
                peers = {"Chen loop": lambda: per_episode(lambda s, q, sd: chen_finetune(s, q, sd, cos).argmax(1),
                                                          feats, idx[:n_peer], shots, seeds)}
            fns = {"ours": lambda: ours(method, feats, idx, shots), **peers}
            times, out = timed(fns, repeats if method in ("protonet", "logreg") else 1)
            count = f"{n} ep" if n_peer == n else f"{n} ep, peer {n_peer}"
            for peer in peers:
                differ = int((out["ours"][:n_peer] != out[peer]).any(-1).sum())
                line(f"{method} {ways}w{shots}s ({count})", times["ours"] / n, peer, times[peer] / n_peer, differ, 1e6)
            if method == "logreg":
                tight = per_episode(lambda s, q, sd: sklearn_logreg(s, q, sd, 1e-10, "newton-cg"), feats, idx, shots,
                                    seeds)
                print(f"|  logreg {ways}w{shots}s vs sklearn newton-cg tol 1e-10 | | | | | "
                      f"{int((out['ours'] != tight).any(-1).sum())} |")


def bench_solvers(settings, episodes):
    """Our logistic-regression solvers against each other, through the real chunked path: ms per episode and
    episodes whose predictions differ from the factorised Hessian's (that solver is skipped above 4,000
    unknowns, where one factorisation per step costs seconds)."""
    lr = sys.modules["fewshot_cam.fewshot.logreg"]  # the module (the package's ``logreg`` is the function)

    print("\n| logreg solver, ways-shots | cholesky ms/episode | cg | pcg | episodes differing (cg, pcg) |\n"
          "|---|---|---|---|---|")
    for ways, shots in settings:
        feats, idx = features_and_episodes(ways, shots, episodes)
        solvers = ["cholesky", "cg", "pcg"] if ways * (ways * shots + 1) <= 4000 else ["cg", "pcg"]
        fns = {}
        for solver in solvers:
            def run(solver=solver):
                lr.AUTO = solver
                try:
                    return ours("logreg", feats, idx, shots)
                finally:
                    lr.AUTO = "pcg"
            fns[solver] = run
        times, out = timed(fns, 2)
        ms = {k: f"{times[k] / episodes * 1e3:.2f}" for k in solvers}
        ref = out[solvers[0]]
        differ = ", ".join(str(int((out[k] != ref).any(-1).sum())) for k in ("cg", "pcg"))
        print(f"| {ways}w{shots}s ({episodes} ep) | {ms.get('cholesky', '-')} | {ms['cg']} | {ms['pcg']} | {differ} |",
              flush=True)


def maps_differing(ours_maps: torch.Tensor, peer_maps, size) -> str:
    """Images whose maps disagree (Pearson correlation < 0.99 at the input size; peer maps upsampled and
    min-max normalised like ours), and the lowest correlation."""
    from fewshot_cam.analysis.attribution import upsample_normalize

    peer = torch.as_tensor(np.asarray(peer_maps) if not torch.is_tensor(peer_maps) else peer_maps).float()
    peer = upsample_normalize(peer.to(ours_maps.device), size) if peer.shape[-2:] != size else peer
    a, b = ours_maps.flatten(1).double().cpu(), peer.flatten(1).double().cpu()
    corr = F.cosine_similarity(a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True), dim=1)
    return f"{int((corr < 0.99).sum())} (min r {float(corr.min()):.4f})"


def bench_cam(repeats, device):
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from torchcam.methods import CAM, GradCAMpp
    from torchcam.methods import GradCAM as TcGradCAM

    from fewshot_cam.analysis.attribution import attribute, classifier_scorer
    from fewshot_cam.models.backbones import build_backbone
    from fewshot_cam.models.classifier import FewShotClassifier, LinearHead

    torch.manual_seed(0)
    backbone = build_backbone("resnet12")
    model = FewShotClassifier(backbone, LinearHead(backbone.out_channels, 64)).eval().to(device)
    x = torch.rand(16, 3, 84, 84, device=device)
    layer = model.backbone
    scorer = classifier_scorer(model)
    print("\n| CAM method (16 images 84x84, ResNet-12) | ours ms | peer | peer ms | ratio | maps differing |\n"
          "|---|---|---|---|---|---|")
    family = (("cam", None, CAM), ("gradcam", GradCAM, TcGradCAM), ("gradcam++", GradCAMPlusPlus, GradCAMpp))
    for name, pgc, tc in family:
        fns = {"ours": lambda: attribute(name, scorer, x)}
        if pgc is not None:
            fns["pytorch-grad-cam"] = lambda: pgc(model=model, target_layers=[layer])(input_tensor=x, targets=None)

        def torchcam_run():
            with tc(model, target_layer=layer, **({"fc_layer": model.head} if tc is CAM else {})) as extractor:
                logits = model(x)
                return extractor(logits.argmax(1).tolist(), logits)[0]
        fns["torchcam"] = torchcam_run
        times, out = timed(fns, repeats)
        for peer in fns:
            if peer != "ours":
                line(name, times["ours"], peer, times[peer], maps_differing(out["ours"], out[peer], x.shape[-2:]))


MEASURE = """
import sys


def hwm():  # peak RSS of this process image, bytes (ru_maxrss would inherit the parent's peak across exec)
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))


from pathlib import Path
from fewshot_cam.data.datasets import load_split
from fewshot_cam.learn2learn_adapter import l2l, l2l_mini_imagenet
if sys.argv[2] != "ours":
    l2l()
before = hwm()
if sys.argv[2] == "ours":
    n = load_split("mini-imagenet", Path(sys.argv[1]), "test").images.nbytes
else:
    n = len(l2l_mini_imagenet(sys.argv[1], "test")) * 84 * 84 * 3
print("RATIO", (hwm() - before) / n)
"""


def bench_memory(images: int):
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        data = {"image_data": rng.integers(0, 256, (images, 84, 84, 3), dtype=np.uint8),
                "class_dict": {f"n{c:08d}": list(range(c, images, 20)) for c in range(20)}}
        with open(Path(tmp) / "mini-imagenet-cache-test.pkl", "wb") as f:
            pickle.dump(data, f, protocol=4)
        del data
        env = {**os.environ, "FEWSHOT_CAM_CACHE": "off", "PYTHONPATH": str(ROOT)}
        ratio = {}
        for who in ("ours", "learn2learn"):
            run = subprocess.run([sys.executable, "-c", MEASURE, tmp, who], capture_output=True, text=True, env=env,
                                 check=True)
            ratio[who] = float(run.stdout.split("RATIO")[-1])
    mb = images * 84 * 84 * 3 / 2**20
    print(f"\n| first load of a {mb:.0f} MiB split (peak RSS over the import baseline / uint8 size) | ours "
          f"{ratio['ours']:.2f}x | learn2learn {ratio['learn2learn']:.2f}x |\n|---|---|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer episodes and repeats")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", default="fewshot,solvers,cam,memory")
    parser.add_argument("--methods", default="protonet,logreg,baseline,baseline++")
    parser.add_argument("--settings", default="5x1,5x5,5x10,5x20,20x1,20x5,20x10,20x20",
                        help="ways x shots, comma-separated")
    parser.add_argument("--episodes", type=int, default=500, help="ProtoNet episodes (logreg 1/5, fine-tuning 1/50)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    parts = args.only.split(",")
    settings = [tuple(int(v) for v in s.split("x")) for s in args.settings.split(",")]
    if "fewshot" in parts:
        bench_fewshot(settings[:2] if args.quick else settings, 100 if args.quick else args.episodes, 3,
                      args.methods.split(","), torch.device(args.device))
    if "solvers" in parts:
        bench_solvers(settings[:2] if args.quick else settings, 20 if args.quick else max(20, args.episodes // 10))
    if "cam" in parts:
        bench_cam(3 if args.quick else 5, torch.device(args.device))
    if "memory" in parts:
        bench_memory(2000 if args.quick else 14000)


if __name__ == "__main__":
    main()
