"""Data flows one way: data -> fewshot -> models -> losses -> training -> evaluation -> analysis -> cli -> bench.

Each module may import its own stage, earlier stages and the stage-free helpers; never a later stage.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "fewshot_cam"
ORDER = ["data", "fewshot", "models", "losses", "training", "evaluation", "analysis", "cli", "bench"]
HELPERS = {"errors", "config", "stats", "progress", "io", "registry", "learn2learn_adapter", "__init__", "__main__"}


def stage_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "fewshot_cam" or len(parts) < 2 or parts[1] in HELPERS:
        return None
    return ORDER.index(parts[1])


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_module_imports_a_later_stage():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 5
    bad = []
    for path in files:
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts)
        own = stage_of(module)
        for imported in imports_of(path):
            other = stage_of(imported)
            if own is None and other is not None and module.split(".")[1] not in ("__main__",):
                bad.append(f"helper {module} imports stage module {imported}")
            elif own is not None and other is not None and other > own:
                bad.append(f"{module} imports later stage {imported}")
    assert not bad, "\n".join(bad)


def test_only_the_adapter_imports_learn2learn():
    offenders = [
        str(p) for p in PACKAGE.rglob("*.py")
        if p.name != "learn2learn_adapter.py" and any(n.split(".")[0] == "learn2learn" for n in imports_of(p))
    ]
    assert not offenders
