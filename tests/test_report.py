"""``fewshot-cam report`` and the paired statistics, against scipy."""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
import scipy.stats

from fewshot_cam.evaluation.paired import compare_paired
from fewshot_cam.evaluation.report import build_report, same_episodes
from fewshot_cam.evaluation.results import EvalResult, MethodResult, read_result, write_result

N_EPISODES = 40


def make_result(shift: float, seed: int = 0, episodes_hash: str = "abc", methods=("protonet", "logreg")) -> EvalResult:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 16, size=N_EPISODES) * 100 / 15
    results = tuple(
        MethodResult.from_accuracies(m, np.clip(base + shift * i + rng.integers(-1, 3, N_EPISODES) * 100 / 15, 0, 100))
        for i, m in enumerate(methods, start=1)
    )
    return EvalResult(5, 1, 15, N_EPISODES, None, 0, "fp", episodes_hash, "a.pt", "synthetic", "test", results)


def test_paired_comparison_matches_scipy():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 76, 50) * 100 / 75
    b = np.clip(a - rng.integers(-3, 8, 50) * 100 / 75, 0, 100)
    c = compare_paired(a, b)
    d = a - b
    low, high = scipy.stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=scipy.stats.sem(d))
    assert c.mean_diff == pytest.approx(d.mean()) and c.ci95 == pytest.approx((high - low) / 2)
    assert c.t_pvalue == pytest.approx(scipy.stats.ttest_rel(a, b).pvalue)
    assert c.wilcoxon_pvalue == pytest.approx(scipy.stats.wilcoxon(d).pvalue)
    assert c.n == 50


def test_identical_runs_give_p_one_without_warnings():
    a = np.linspace(10, 90, 30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning (scipy's zero-variance RuntimeWarning included) fails
        c = compare_paired(a, a)
        shifted = compare_paired(a + 5.0, a)  # constant non-zero difference: scipy would warn, we do not
    assert (c.mean_diff, c.ci95, c.t_pvalue, c.wilcoxon_pvalue) == (0.0, 0.0, 1.0, 1.0)
    assert shifted.mean_diff == pytest.approx(5.0) and shifted.ci95 == pytest.approx(0.0, abs=1e-12)


def test_scipy_does_warn_on_a_constant_difference():
    """The inputs above can tell: without compare_paired's handling, scipy warns on them."""
    a = np.linspace(10, 90, 30)
    with pytest.warns(RuntimeWarning):
        scipy.stats.ttest_rel(a + 5.0, a)


def test_report_pairs_only_runs_on_the_same_episodes():
    a, b, other = make_result(0.0, 0), make_result(2.0, 1), make_result(1.0, 2, episodes_hash="xyz")
    assert same_episodes(a, b) and not same_episodes(a, other)
    assert not same_episodes(a, replace(b, shots=5))
    report = build_report([("a", a), ("b", b), ("other", other)])
    assert [(r.run_a, r.run_b, r.method) for r in report.paired] == [("a", "b", "protonet"), ("a", "b", "logreg")]
    assert len(report.notes) == 2 and "other" in report.notes[0]
    row = report.paired[1]
    x, y = a.results[1].per_episode, b.results[1].per_episode
    assert row.mean_diff == pytest.approx(np.mean(np.subtract(x, y)))
    assert row.t_test_p == pytest.approx(scipy.stats.ttest_rel(x, y).pvalue)
    assert row.wilcoxon_p == pytest.approx(scipy.stats.wilcoxon(np.subtract(x, y)).pvalue)


def test_json_round_trip(tmp_path):
    result = make_result(1.0)
    assert read_result(write_result(tmp_path / "r.json", result)) == result


def test_report_cli_table_csv_and_baseline(tmp_path, cli):
    runs = [("a", 0.0), ("b", 1.0), ("c", 3.0)]
    paths = [write_result(tmp_path / f"{name}.json", make_result(shift, i)) for i, (name, shift) in enumerate(runs)]
    code, out, _ = cli("report", *paths, "--baseline", paths[0], "--csv", tmp_path / "t.csv")
    assert code == 0
    assert "| a " in out and "Paired comparisons" in out
    with open(tmp_path / "t.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["run"], r["method"]) for r in rows[:2]] == [("a", "protonet"), ("a", "logreg")]
    assert float(rows[0]["mean"]) == pytest.approx(make_result(0, 0).results[0].mean)
    with open(tmp_path / "t_paired.csv") as f:
        paired = list(csv.DictReader(f))
    assert {(r["run_a"], r["run_b"]) for r in paired} == {("b", "a"), ("c", "a")}


@pytest.mark.parametrize("content", ["{not json", json.dumps({"format": "fewshot-cam-eval/1", "ways": 5})])
def test_malformed_results_exit_2(tmp_path, cli, content):
    good = write_result(tmp_path / "good.json", make_result(0.0))
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, out, err = cli("report", good, bad)
    assert code == 2 and "bad.json" in err and len(err.strip().splitlines()) == 1


def test_wrong_number_of_per_episode_values_exit_2(tmp_path, cli):
    path = write_result(tmp_path / "r.json", make_result(0.0))
    record = json.loads(path.read_text())
    record["results"][0]["per_episode"].pop()
    path.write_text(json.dumps(record))
    code, _, err = cli("report", path)
    assert code == 2 and "per-episode" in err
