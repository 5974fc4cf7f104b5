"""The GPU check (issue 20): CUDA paths verified and the figures a user needs to plan a run.

``python -m fewshot_cam.bench [--dry-run] [--out DIR] [--stages a,b,...]`` (or
``scripts/gpu-check.sh``) runs its stages in order, each in its own subprocess with its own time box,
and rewrites ``report.json`` / ``report.md`` as soon as each stage ends. It is the top stage: it
imports package internals only through :mod:`fewshot_cam.bench._api`, and never learn2learn.
"""
