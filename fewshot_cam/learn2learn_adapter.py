"""Every learn2learn import in fewshot-cam goes through this module, imported lazily.

learn2learn 0.2.0 is installed by scripts/setup.sh (built from regenerated Cython sources);
``import learn2learn`` also needs ``gym``. Nothing else in the package imports learn2learn directly.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType

from fewshot_cam.errors import UserError

_L2L: ModuleType | None = None


def l2l() -> ModuleType:
    """The learn2learn module, imported on first use (gym's import-time notices silenced)."""
    global _L2L
    if _L2L is None:
        os.environ.setdefault("GYM_NOTICES", "0")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import contextlib
                import io

                with contextlib.redirect_stderr(io.StringIO()):
                    import learn2learn
        except ImportError as err:
            raise UserError(f"learn2learn is not installed ({err}); run scripts/setup.sh") from None
        _L2L = learn2learn
    return _L2L
