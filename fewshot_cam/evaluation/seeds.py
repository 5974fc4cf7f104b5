"""Results over several training seeds: the spread between training runs, not only between episodes.

A per-episode CI (:mod:`.results`) measures episode sampling within one trained model; a claim that
one training recipe beats another rests on the variation between training runs. Here each *group*
(a label, e.g. "ce" or "camloss") holds one eval result per training seed (``train_seed`` in the
JSON). Per group, few-shot method and setting (ways, shots, queries, ``episodes_hash``):

* the mean over seeds of each seed's mean accuracy, with the 95% t-interval over seeds
  (t(0.975, n_seeds - 1) s / sqrt(n_seeds), :func:`fewshot_cam.stats.mean_ci95`), beside each seed's
  own episode CI;
* between two groups, on the seeds both hold and the same frozen episodes: the per-seed differences
  d_s = mean_A(s) - mean_B(s), their mean +- 95% t-interval and the paired t-test over seeds
  (``scipy.stats.ttest_rel``), plus the episode-level paired comparison of each seed
  (:func:`.paired.compare_paired`).

Pairing by seed number is fewshot-cam's own convention: seed s of A and seed s of B share their
initialisation and data order where the recipes allow it, and the same frozen episodes always; with
n_seeds values per group the seed-level test has n_seeds - 1 degrees of freedom, so three seeds can
only show large, consistent differences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from fewshot_cam.errors import UserError
from fewshot_cam.evaluation.paired import PairedComparison, compare_paired
from fewshot_cam.evaluation.report import same_episodes
from fewshot_cam.evaluation.results import EvalResult, markdown_table
from fewshot_cam.stats import Interval, mean_ci95

SettingKey = tuple[str, int, int, int, str]  # (method, ways, shots, queries, episodes_hash)


@dataclass(frozen=True)
class SeedRow:
    """One (group, few-shot method, setting): the mean over ``seeds`` and each seed's episode CI."""

    group: str
    key: SettingKey
    seeds: tuple[int, ...]
    over_seeds: Interval
    per_seed: tuple[Interval, ...]
    n_episodes: int


@dataclass(frozen=True)
class SeedPair:
    """group_a - group_b on ``seeds`` (shared): over seeds, and per seed over the shared episodes."""

    group_a: str
    group_b: str
    key: SettingKey
    seeds: tuple[int, ...]
    over_seeds: PairedComparison
    per_seed: tuple[PairedComparison, ...]
    n_episodes: int


def setting_name(key: SettingKey) -> str:
    method, ways, shots, queries, _ = key
    return f"{ways}-way {shots}-shot {queries}-query"


def _by_setting(group: str, results: Sequence[tuple[str, EvalResult]]) -> dict[SettingKey, dict[int, tuple]]:
    """key -> {seed: (result, MethodResult)}; UserError for a result without seed or a repeated seed."""
    table: dict[SettingKey, dict[int, tuple]] = {}
    for path, r in results:
        if r.train_seed is None:
            raise UserError(f"group '{group}': the result records no training seed (re-run fewshot-cam eval)", path)
        for m in r.results:
            key = (m.method, r.ways, r.shots, r.queries, r.episodes_hash)
            seeds = table.setdefault(key, {})
            if r.train_seed in seeds:
                raise UserError(f"group '{group}': training seed {r.train_seed} appears twice for {m.method}, "
                                f"{r.setting()}", path)
            seeds[r.train_seed] = (r, m)
    return table


def seed_rows(groups: dict[str, dict[SettingKey, dict[int, tuple]]]) -> list[SeedRow]:
    rows = []
    for group, table in groups.items():
        for key, by_seed in table.items():
            seeds = tuple(sorted(by_seed))
            per_seed = tuple(mean_ci95(by_seed[s][1].per_episode) for s in seeds)
            over = mean_ci95([i.mean for i in per_seed])
            rows.append(SeedRow(group, key, seeds, over, per_seed, by_seed[seeds[0]][0].n_episodes))
    return rows


def seed_pair(a: str, b: str, key: SettingKey, seeds_a: dict[int, tuple], seeds_b: dict[int, tuple]) -> SeedPair | None:
    """A vs B on their shared seeds, None when they share none or the episodes differ."""
    seeds = tuple(sorted(set(seeds_a) & set(seeds_b)))
    if not seeds or not all(same_episodes(seeds_a[s][0], seeds_b[s][0]) for s in seeds):
        return None
    per_seed = tuple(compare_paired(seeds_a[s][1].per_episode, seeds_b[s][1].per_episode) for s in seeds)
    means_a = [mean_ci95(seeds_a[s][1].per_episode).mean for s in seeds]
    means_b = [mean_ci95(seeds_b[s][1].per_episode).mean for s in seeds]
    return SeedPair(a, b, key, seeds, compare_paired(means_a, means_b), per_seed, seeds_a[seeds[0]][0].n_episodes)


@dataclass(frozen=True)
class SeedReport:
    rows: list[SeedRow]
    pairs: list[SeedPair]
    notes: list[str]


def build_seed_report(groups: dict[str, Sequence[tuple[str, EvalResult]]], baseline: str | None = None) -> SeedReport:
    """``groups``: label -> [(path, result), ...], one result per training seed. Pairs: every two
    groups (each against ``baseline`` when given), per shared method and setting."""
    tables = {g: _by_setting(g, results) for g, results in groups.items()}
    names = list(tables)
    if baseline is not None and baseline not in tables:
        raise UserError(f"--baseline '{baseline}' is not a group (groups: {', '.join(names)})")
    order = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]] if baseline is None else \
        [(a, baseline) for a in names if a != baseline]
    pairs, notes = [], []
    for a, b in order:
        for key in [k for k in tables[a] if k in tables[b]]:  # group a's order
            pair = seed_pair(a, b, key, tables[a][key], tables[b][key])
            if pair is None:
                notes.append(
                    f"{a} vs {b}, {key[0]} {setting_name(key)}: not paired (no shared seed on the same episodes)"
                )
            else:
                pairs.append(pair)
    return SeedReport(seed_rows(tables), pairs, notes)


def format_seed_report(report: SeedReport) -> str:
    """Markdown: over-seed table (with each seed's episode CI), then the seed-paired comparisons."""
    rows = [(r.group, r.key[0], setting_name(r.key), str(r.over_seeds), len(r.seeds), r.n_episodes,
             "; ".join(f"s{s}: {i}" for s, i in zip(r.seeds, r.per_seed))) for r in report.rows]
    header = ("group", "method", "setting", "mean over seeds % (95% CI)", "seeds", "episodes/seed",
              "per seed: mean +- episode CI")
    text = "Accuracy over training seeds (CI: t over seeds, n-1 df):\n\n" + markdown_table(header, rows)
    if report.pairs:
        rows = [
            (
                p.group_a,
                p.group_b,
                p.key[0],
                setting_name(p.key),
                f"{p.over_seeds.mean_diff:+.2f} +- {p.over_seeds.ci95:.2f}",
                len(p.seeds),
                f"{p.over_seeds.t_pvalue:.3g}",
                p.n_episodes,
                "; ".join(
                    f"s{s}: {c.mean_diff:+.2f} +- {c.ci95:.2f} (p {c.t_pvalue:.3g})"
                    for s, c in zip(p.seeds, p.per_seed)
                ),
            )
            for p in report.pairs
        ]
        header = ("group a", "group b", "method", "setting", "a - b over seeds (95% CI)", "seeds",
                  "paired t p (seeds)", "episodes/seed", "per seed: a - b on shared episodes (paired t p)")
        text += "\n\nPaired by training seed on the same frozen episodes:\n\n" + markdown_table(header, rows)
    if report.notes:
        text += "\n\n" + "\n".join(f"Note: {note}" for note in report.notes)
    return text


def _interval(i: Interval) -> dict:
    return {"mean": i.mean, "ci95": i.ci95, "n": i.n}


def _comparison(c: PairedComparison) -> dict:
    return {"mean_diff": c.mean_diff, "ci95": c.ci95, "n": c.n, "t_test_p": c.t_pvalue, "wilcoxon_p": c.wilcoxon_pvalue}


def seed_report_record(report: SeedReport) -> dict:
    """The JSON body of ``report --json`` for groups (every number says its seeds and episodes)."""
    def setting(key: SettingKey) -> dict:
        return dict(zip(("method", "ways", "shots", "queries", "episodes_hash"), key))

    rows = [{"group": r.group, **setting(r.key), "seeds": list(r.seeds), "n_seeds": len(r.seeds),
             "n_episodes": r.n_episodes, "over_seeds": _interval(r.over_seeds),
             "per_seed": [_interval(i) for i in r.per_seed]} for r in report.rows]
    pairs = [{"group_a": p.group_a, "group_b": p.group_b, **setting(p.key), "seeds": list(p.seeds),
              "n_seeds": len(p.seeds), "n_episodes": p.n_episodes, "over_seeds": _comparison(p.over_seeds),
              "per_seed": [_comparison(c) for c in p.per_seed]} for p in report.pairs]
    return {"kind": "seeds", "rows": rows, "paired": pairs, "notes": report.notes}
