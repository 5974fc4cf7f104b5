"""Evaluation results: the JSON file ``fewshot-cam eval --json`` writes, and the tables printed from it.

One JSON object (``FORMAT`` = "fewshot-cam-eval/1")::

    {"format": "fewshot-cam-eval/1", "ways": 5, "shots": 1, "queries": 15, "n_episodes": 2000,
     "episode_file": "episodes/....json.gz" | null, "seed": 0, "fingerprint": "<split fingerprint>",
     "episodes_hash": "<hash of the (E, N, K+Q) indices>", "checkpoint": "runs/a/best.pt",
     "dataset": "mini-imagenet", "split": "test",
     "results": [{"method": "protonet", "mean": 61.2, "ci95": 0.41, "per_episode": [60.0, ...]}, ...],
     "train_seed": 0 | null, "train_config": {...} | null,
     "protocol": "fewshot-cam", "normalize": "none", "support_augment": 0,
     "episodes_from": "shipped frozen episode file", "overrides": [], "base_split": null}

Accuracies are percentages. ``seed`` seeds the episode sampler when no episode file is used, and the
fitted methods (Baseline, Baseline++) in every case. ``train_seed`` is the checkpoint's training seed
(``config.run.seed``) and ``train_config`` its whole resolved config (null when the checkpoint holds
none); ``fewshot-cam report --group`` combines results over training seeds by them. Two results are
on the same episodes when their fingerprint, setting, number of episodes and ``episodes_hash`` agree.

``protocol`` names the preset (``eval --protocol``), ``normalize`` and ``support_augment`` the feature
normalisation and support copies used, ``episodes_from`` how the episodes were chosen (an episode
file, the shipped frozen file, or drawn with ``seed``), ``overrides`` the settings given explicitly in
place of the protocol's, and ``base_split`` the split CL2N's mean came from (null otherwise). A file
written before these keys existed reads as the fewshot-cam protocol without normalisation.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import asdict, astuple, dataclass, field, is_dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from fewshot_cam.errors import UserError
from fewshot_cam.io import atomic_write, read_json
from fewshot_cam.stats import format_ci, mean_ci95

FORMAT = "fewshot-cam-eval/1"


@dataclass(frozen=True)
class MethodResult:
    """One method's mean +- 95% CI (percent) and its per-episode accuracies."""

    method: str
    mean: float
    ci95: float
    per_episode: list[float] = field(repr=False)

    @classmethod
    def from_accuracies(cls, method: str, accuracies) -> MethodResult:
        interval = mean_ci95(accuracies)
        return cls(method, interval.mean, interval.ci95, [float(a) for a in np.asarray(accuracies).ravel()])


@dataclass(frozen=True)
class EvalResult:
    """Everything one evaluation run reports (see the module docstring for the JSON keys)."""

    ways: int
    shots: int
    queries: int
    n_episodes: int
    episode_file: str | None
    seed: int
    fingerprint: str
    episodes_hash: str
    checkpoint: str
    dataset: str
    split: str
    results: tuple[MethodResult, ...]
    train_seed: int | None = None
    train_config: dict | None = field(default=None, repr=False)
    protocol: str = "fewshot-cam"
    normalize: str = "none"
    support_augment: int = 0
    episodes_from: str = ""
    overrides: list[str] = field(default_factory=list)
    base_split: dict | None = None

    def setting(self) -> str:
        return f"{self.ways}-way {self.shots}-shot"

    def episodes_source(self) -> str:
        return f"episode file {self.episode_file}" if self.episode_file else f"seed {self.seed}"


def episodes_hash(indices: torch.Tensor) -> str:
    """16 hex digits identifying a set of episodes (E, N, K+Q) of indices."""
    data = np.ascontiguousarray(indices.cpu().numpy().astype(np.int64))
    return hashlib.sha256(repr(data.shape).encode() + data.tobytes()).hexdigest()[:16]


def write_result(path: str | Path, result: EvalResult, settings: dict | None = None) -> Path:
    """The result as JSON (``format`` first, one line per method), written atomically; ``settings``
    (the command's resolved flags) goes in under the key "settings"."""
    record = {"format": FORMAT, **asdict(result)} | ({} if settings is None else {"settings": settings})
    entries = [json.dumps(entry) for entry in record.pop("results")]  # one line per method
    head = json.dumps(record, indent=1)[:-2]
    return atomic_write(path, head + ',\n "results": [\n  ' + ",\n  ".join(entries) + "\n ]\n}\n")


_TYPES = {"ways": int, "shots": int, "queries": int, "n_episodes": int, "seed": int, "fingerprint": str,
          "checkpoint": str, "dataset": str, "split": str}


def read_result(path: str | Path) -> EvalResult:
    """Read a result JSON; UserError naming the key for anything missing or malformed."""
    path = Path(path)
    record = read_json(path)
    if record.get("format") != FORMAT:
        raise UserError(f"not a fewshot-cam eval result (format {record.get('format')!r}, must be '{FORMAT}')", path)
    for key, tp in _TYPES.items():
        if not isinstance(record.get(key), tp) or isinstance(record.get(key), bool):
            raise UserError(f"results key '{key}' must be {tp.__name__}, got {record.get(key)!r}", path)
    entries = record.get("results")
    if not isinstance(entries, list) or not entries:
        raise UserError("results key 'results' must be a non-empty list", path)
    methods = tuple(_read_method(entry, record["n_episodes"], path) for entry in entries)
    return EvalResult(
        **{k: record[k] for k in _TYPES}, episode_file=record.get("episode_file"),
        episodes_hash=str(record.get("episodes_hash") or ""), results=methods,
        train_seed=_optional_int(record, "train_seed", path), train_config=record.get("train_config"),
        **_protocol_keys(record, path),
    )


def _protocol_keys(record: dict, path: Path) -> dict:
    """protocol, normalize, support_augment, episodes_from, overrides, base_split (defaults when absent)."""
    keys = {"protocol": str(record.get("protocol") or "fewshot-cam"),
            "normalize": str(record.get("normalize") or "none"),
            "support_augment": _optional_int(record, "support_augment", path) or 0,
            "episodes_from": str(record.get("episodes_from") or ""),
            "overrides": [str(o) for o in record.get("overrides") or []], "base_split": record.get("base_split")}
    return keys


def _optional_int(record: dict, key: str, path: Path) -> int | None:
    value = record.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise UserError(f"results key '{key}' must be an integer or null, got {value!r}", path)
    return value


def _read_method(entry, n_episodes: int, path: Path) -> MethodResult:
    try:
        per_episode = [float(a) for a in entry["per_episode"]]
        result = MethodResult(str(entry["method"]), float(entry["mean"]), float(entry["ci95"]), per_episode)
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"malformed entry in 'results' ({type(err).__name__}: {err})", path) from None
    if len(per_episode) != n_episodes:
        count = len(per_episode)
        raise UserError(f"method '{result.method}' has {count} per-episode values, n_episodes is {n_episodes}", path)
    return result


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-markdown table with columns padded to equal width."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def format_result(result: EvalResult) -> str:
    """The table ``fewshot-cam eval`` prints: method, mean accuracy % +- 95% CI, episodes."""
    rows = [(r.method, format_ci(r.mean, r.ci95), str(len(r.per_episode))) for r in result.results]
    head = (f"{result.setting()} {result.queries}-query on {result.dataset}/{result.split}: {result.n_episodes} "
            f"episodes from {result.episodes_source()} (split fingerprint {result.fingerprint})\n"
            f"protocol {result.protocol}: normalize {result.normalize}, support augment {result.support_augment}"
            + (f" (given explicitly: {', '.join(result.overrides)})" if result.overrides else ""))
    return head + "\n\n" + markdown_table(("method", "accuracy % (95% CI)", "episodes"), rows)


def write_csv(path: str | Path, header: Sequence[str], rows: Sequence[Sequence]) -> Path:
    """A CSV table, written atomically; ``rows`` are sequences or dataclasses (their fields in order)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(astuple(r) if is_dataclass(r) else r for r in rows)
    return atomic_write(path, text.getvalue())
