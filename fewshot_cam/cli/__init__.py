"""The ``fewshot-cam`` command line: the only place that imports every stage.

Each command lives in its own module ``fewshot_cam/cli/<name>.py`` exposing
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported lazily, so
``fewshot-cam data info`` never pays for importing the training or analysis stages.
A :class:`~fewshot_cam.errors.UserError` becomes one line on stderr and exit code 2; so does a usage
error argparse finds (:class:`Parser`), without the usage block.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from fewshot_cam.errors import UserError

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("fewshot_cam.cli.data", "inspect datasets, write or preview the built-in benchmark"),
    "episodes": ("fewshot_cam.cli.episodes", "make frozen evaluation-episode files"),
    "pretrain": ("fewshot_cam.cli.pretrain", "pretrain a backbone with cross-entropy (+ CAM-loss)"),
    "metatrain": ("fewshot_cam.cli.metatrain", "episodic ProtoNet fine-tuning of a pretrained backbone"),
    "eval": ("fewshot_cam.cli.eval", "few-shot evaluation: ProtoNet and fine-tuning baselines"),
    "report": ("fewshot_cam.cli.report", "tables and paired comparisons across eval results"),
    "cam": ("fewshot_cam.cli.cam", "draw class activation maps (CAM, Grad-CAM, Grad-CAM++, Score-CAM)"),
    "ablate": ("fewshot_cam.cli.ablate", "background-reliance analysis on original/foreground/background images"),
    "study": ("fewshot_cam.cli.study", "the whole job on any dataset: pretrain CE and CAM-loss, evaluate, report, "
                                       "CAMs, background analysis (resumable)"),
}


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line: ``fewshot-cam: error: <command>: <message> (see --help)``."""

    def error(self, message: str):  # type: ignore[override]
        command = self.prog.removeprefix("fewshot-cam").strip()
        where = f"{command}: " if command else ""
        print(f"fewshot-cam: error: {where}{' '.join(message.split())} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = Parser(prog="fewshot-cam", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        # Only the chosen command's module is imported (others just show in --help).
        if name == wanted:
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as err:
                if err.name == module:
                    raise UserError(f"command '{name}' is not available in this version") from None
                raise
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def run_command(argv: list[str]) -> int:
    """Parse ``argv`` (``--config`` / ``--set`` resolved) and run the command; a UserError propagates."""
    argv = [str(a) for a in argv]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if getattr(args, "_settings", None) is not None:
        from fewshot_cam.cli.common import resolve_settings

        args = resolve_settings(parser, argv, args)
    return int(args._run(args) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run_command(argv)
    except UserError as err:
        print(f"fewshot-cam: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fewshot-cam: interrupted", file=sys.stderr)
        return 130
