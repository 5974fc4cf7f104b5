"""``python -m fewshot_cam`` (also the entry for ``torchrun -m fewshot_cam pretrain ...``)."""

from fewshot_cam.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
