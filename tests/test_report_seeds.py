"""Results over training seeds: the seed-level CI and the seed-paired test against scipy, and the
``pretrain --seeds`` -> ``eval --json`` -> ``report --group`` chain end to end."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from fewshot_cam.errors import UserError
from fewshot_cam.evaluation.results import EvalResult, MethodResult, read_result, write_result
from fewshot_cam.evaluation.seeds import build_seed_report
from fewshot_cam.stats import mean_ci95

CONFIGS = Path(__file__).parent.parent / "configs"
N = 30


def result(seed: int, shift: float, episodes_hash: str = "h") -> EvalResult:
    """A result of training seed ``seed``; its accuracies differ between seeds (not only by a shift)."""
    rng = np.random.default_rng(100 * seed + int(shift * 10))
    acc = np.clip(rng.integers(0, 16, N) * 100 / 15 + shift, 0, 100)
    methods = (MethodResult.from_accuracies("protonet", acc), MethodResult.from_accuracies("logreg", acc[::-1]))
    return EvalResult(5, 1, 15, N, None, 0, "fp", episodes_hash, f"s{seed}.pt", "synthetic", "test", methods,
                      train_seed=seed)


def test_over_seed_interval_is_the_t_interval_with_n_minus_one_df():
    groups = {"a": [(f"a{s}", result(s, 0.0)) for s in (0, 1, 2)]}
    row = next(r for r in build_seed_report(groups).rows if r.key[0] == "protonet")
    means = np.array([np.mean(result(s, 0.0).results[0].per_episode) for s in (0, 1, 2)])
    low, high = scipy.stats.t.interval(0.95, 2, loc=means.mean(), scale=scipy.stats.sem(means))
    assert row.seeds == (0, 1, 2) and row.n_episodes == N
    assert row.over_seeds.mean == pytest.approx(means.mean())
    assert row.over_seeds.ci95 == pytest.approx((high - low) / 2)
    # each seed's own episode CI sits beside it (n = episodes, not seeds)
    assert [i.n for i in row.per_seed] == [N] * 3
    assert row.per_seed[1].ci95 == pytest.approx(mean_ci95(result(1, 0.0).results[0].per_episode).ci95)


def test_seed_pairing_matches_ttest_rel_and_the_episode_level_pairs():
    a = [(f"a{s}", result(s, 3.0)) for s in (0, 1, 2)]
    b = [(f"b{s}", result(s, 0.0)) for s in (2, 1, 0, 3)]  # order does not matter; seed 3 has no partner
    report = build_seed_report({"a": a, "b": b})
    pair = next(p for p in report.pairs if p.key[0] == "protonet")
    ma = [np.mean(result(s, 3.0).results[0].per_episode) for s in (0, 1, 2)]
    mb = [np.mean(result(s, 0.0).results[0].per_episode) for s in (0, 1, 2)]
    d = np.subtract(ma, mb)
    low, high = scipy.stats.t.interval(0.95, 2, loc=d.mean(), scale=scipy.stats.sem(d))
    assert pair.seeds == (0, 1, 2)
    assert pair.over_seeds.mean_diff == pytest.approx(d.mean()) and pair.over_seeds.ci95 == pytest.approx(
        (high - low) / 2
    )
    assert pair.over_seeds.t_pvalue == pytest.approx(scipy.stats.ttest_rel(ma, mb).pvalue)
    x, y = result(1, 3.0).results[0].per_episode, result(1, 0.0).results[0].per_episode
    assert pair.per_seed[1].t_pvalue == pytest.approx(scipy.stats.ttest_rel(x, y).pvalue)
    assert next(r for r in report.rows if r.group == "b").seeds == (0, 1, 2, 3)


def test_groups_on_different_episodes_or_settings_are_not_paired():
    a = [(f"a{s}", result(s, 1.0)) for s in (0, 1)]
    b = [(f"b{s}", result(s, 0.0, episodes_hash="other")) for s in (0, 1)]
    report = build_seed_report({"a": a, "b": b})
    assert report.pairs == [] and len({r.key for r in report.rows}) == 4  # 2 methods x 2 episode sets
    c = [(f"c{s}", replace(result(s, 0.0), queries=10)) for s in (0, 1)]
    assert build_seed_report({"a": a, "c": c}).pairs == []


def test_missing_or_repeated_training_seed_is_a_user_error():
    with pytest.raises(UserError, match="no training seed"):
        build_seed_report({"a": [("x.json", replace(result(0, 0.0), train_seed=None))]})
    with pytest.raises(UserError, match="seed 0 appears twice"):
        build_seed_report({"a": [("x.json", result(0, 0.0)), ("y.json", result(0, 1.0))]})


def test_train_seed_and_config_round_trip(tmp_path):
    r = replace(result(2, 0.0), train_config={"run": {"seed": 2}})
    assert read_result(write_result(tmp_path / "r.json", r)) == r


@pytest.fixture(scope="module")
def seed_evals(tmp_path_factory):
    """Two recipes x seeds 0, 1, 2 of the tiny config, each evaluated on one frozen episode file."""
    from fewshot_cam.cli import main

    root = tmp_path_factory.mktemp("seeds")
    episodes = root / "episodes.json"
    assert main(["episodes", "make", "--dataset", "synthetic", "--ways", "3", "--shots", "1", "--queries", "4",
                 "--n", "40", "--out", str(episodes)]) == 0
    for recipe in ("ce", "camloss"):
        assert (
            main(
                [
                    "pretrain",
                    "--config",
                    str(CONFIGS / f"synthetic-tiny-{recipe}.yaml"),
                    "--epochs",
                    "1",
                    "--set",
                    "val.every=0",
                    "--set",
                    "loss.warmup_epochs=0",
                    "--out",
                    str(root / recipe),
                    "--seeds",
                    "0,1,2",
                ]
            )
            == 0
        )
        for s in (0, 1, 2):
            run = root / recipe / f"seed{s}"
            assert main(["eval", "--checkpoint", str(run / "last.pt"), "--episode-file", str(episodes),
                         "--methods", "protonet", "--device", "cpu", "--json", str(run / "eval.json")]) == 0
    return root


def test_pretrain_seeds_eval_report_end_to_end(seed_evals, cli):
    for s in (0, 1, 2):
        saved = read_result(seed_evals / "ce" / f"seed{s}" / "eval.json")
        assert saved.train_seed == s and saved.train_config["run"]["out"].endswith(f"seed{s}")
    code, out, err = cli("report", "--group", f"camloss={seed_evals}/camloss/seed*/eval.json",
                         "--group", f"ce={seed_evals}/ce/seed*/eval.json", "--json", seed_evals / "report.json")
    assert code == 0, err
    assert "mean over seeds" in out and "Paired by training seed" in out
    record = json.loads((seed_evals / "report.json").read_text())
    assert record["format"] == "fewshot-cam-report/1" and record["kind"] == "seeds"
    assert [(r["group"], r["n_seeds"], r["n_episodes"]) for r in record["rows"]] == [("camloss", 3, 40), ("ce", 3, 40)]
    (pair,) = record["paired"]
    means = {g: [np.mean(read_result(seed_evals / g / f"seed{s}" / "eval.json").results[0].per_episode)
                 for s in (0, 1, 2)] for g in ("camloss", "ce")}
    assert pair["over_seeds"]["t_test_p"] == pytest.approx(scipy.stats.ttest_rel(means["camloss"], means["ce"]).pvalue)
    assert pair["over_seeds"]["n"] == 3 and len(pair["per_seed"]) == 3


def test_report_group_errors(seed_evals, cli):
    assert cli("report", "--group", "nolabel")[0] == 2
    assert cli("report", "--group", f"x={seed_evals}/nothing*/eval.json")[0] == 2
    assert cli("report", seed_evals / "ce/seed0/eval.json", "--group", f"ce={seed_evals}/ce/seed*/eval.json")[0] == 2


def test_single_run_report_json_keeps_the_runs_table(tmp_path, cli):
    paths = [write_result(tmp_path / f"{n}.json", result(s, shift)) for n, s, shift in (("a", 0, 0.0), ("b", 1, 2.0))]
    code, out, _ = cli("report", *paths, "--json", tmp_path / "r.json")
    assert code == 0 and "Paired comparisons on shared episodes" in out
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["kind"] == "runs" and [(r["run"], r["method"], r["n"]) for r in record["results"]][:2] == \
        [("a", "protonet", N), ("a", "logreg", N)]
    x, y = result(0, 0.0).results[0].per_episode, result(1, 2.0).results[0].per_episode
    assert record["paired"][0]["t_test_p"] == pytest.approx(scipy.stats.ttest_rel(x, y).pvalue)
