"""Tables across evaluation runs, with paired comparisons of runs that share their episodes."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

from fewshot_cam.evaluation.paired import compare_paired
from fewshot_cam.evaluation.results import EvalResult, markdown_table, write_csv
from fewshot_cam.stats import format_ci


@dataclass(frozen=True)
class ResultRow:
    """One method of one run: mean accuracy +- 95% CI (percent) over n episodes."""

    run: str
    method: str
    setting: str
    mean: float
    ci95: float
    n: int


@dataclass(frozen=True)
class PairedRow:
    """Run a - run b on one shared method: mean difference +- 95% CI (points), n episodes, two p-values."""

    run_a: str
    run_b: str
    method: str
    setting: str
    mean_diff: float
    ci95: float
    n: int
    t_test_p: float
    wilcoxon_p: float


RESULT_HEADER = tuple(f.name for f in fields(ResultRow))
PAIRED_HEADER = tuple(f.name for f in fields(PairedRow))


@dataclass(frozen=True)
class Report:
    """One row per (run, method); one paired row per (run a, run b, shared method); notes on skipped pairs."""

    results: list[ResultRow]
    paired: list[PairedRow]
    notes: list[str]


def same_episodes(a: EvalResult, b: EvalResult) -> bool:
    """Whether two results were computed on the same episodes of the same split.

    Same split fingerprint, ways, shots, queries and number of episodes, and the same episodes: equal
    ``episodes_hash`` when both have one, else the same episode file, or no file and the same seed.
    """
    keys = ("fingerprint", "ways", "shots", "queries", "n_episodes")
    if any(getattr(a, k) != getattr(b, k) for k in keys):
        return False
    if a.episodes_hash and b.episodes_hash:
        return a.episodes_hash == b.episodes_hash
    if a.episode_file or b.episode_file:
        return bool(a.episode_file and b.episode_file) and Path(a.episode_file).name == Path(b.episode_file).name
    return a.seed == b.seed


def _pairs(names: Sequence[str], baseline: str | None) -> list[tuple[int, int]]:
    n = len(names)
    if baseline is None:
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    base = names.index(baseline)
    return [(i, base) for i in range(n) if i != base]


def build_report(runs: Sequence[tuple[str, EvalResult]], baseline: str | None = None) -> Report:
    """``runs``: (name, result) pairs. Paired rows compare every pair of runs (each run against
    ``baseline`` when given) on each method both hold, when the runs share their episodes."""
    names = [name for name, _ in runs]
    results = [ResultRow(name, m.method, r.setting(), m.mean, m.ci95, len(m.per_episode))
               for name, r in runs for m in r.results]
    paired, notes = [], []
    for i, j in _pairs(names, baseline):
        (name_a, a), (name_b, b) = runs[i], runs[j]
        if not same_episodes(a, b):
            notes.append(f"{name_a} vs {name_b}: not paired (different episodes)")
            continue
        methods_b = {m.method: m for m in b.results}
        for m in a.results:
            if m.method in methods_b:
                c = compare_paired(m.per_episode, methods_b[m.method].per_episode)
                paired.append(PairedRow(name_a, name_b, m.method, a.setting(), c.mean_diff, c.ci95, c.n,
                                        c.t_pvalue, c.wilcoxon_pvalue))
    return Report(results, paired, notes)


def format_report(report: Report) -> str:
    """Markdown: the results table, then the paired comparisons (a - b, points of accuracy) and notes."""
    rows = [(r.run, r.method, r.setting, format_ci(r.mean, r.ci95), r.n) for r in report.results]
    text = markdown_table(("run", "method", "setting", "accuracy % (95% CI)", "episodes"), rows)
    if report.paired:
        rows = [(p.run_a, p.run_b, p.method, p.setting, format_ci(p.mean_diff, p.ci95, signed=True), p.n,
                 f"{p.t_test_p:.3g}", f"{p.wilcoxon_p:.3g}") for p in report.paired]
        header = ("run a", "run b", "method", "setting", "a - b (95% CI)", "episodes", "paired t p", "Wilcoxon p")
        text += "\n\nPaired comparisons on shared episodes:\n\n" + markdown_table(header, rows)
    if report.notes:
        text += "\n\n" + "\n".join(f"Note: {note}" for note in report.notes)
    return text


def write_report_csv(path: str | Path, report: Report) -> list[Path]:
    """The results table to ``path``; the paired comparisons, if any, to ``<stem>_paired.csv`` beside it."""
    path = Path(path)
    written = [write_csv(path, RESULT_HEADER, report.results)]
    if report.paired:
        written.append(write_csv(path.with_name(f"{path.stem}_paired.csv"), PAIRED_HEADER, report.paired))
    return written
