"""``python -m fewshot_cam.bench [--dry-run] [--out DIR] [--stages a,b,...]``: the GPU check
(:mod:`fewshot_cam.bench.gpu_check`). The entry point lives here, not in ``gpu_check``, so the stage
processes' fork server can preload ``gpu_check`` without running it a second time as ``__main__``."""

import sys

from fewshot_cam.bench.gpu_check import main

if __name__ == "__main__":
    sys.exit(main())
