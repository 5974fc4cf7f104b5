"""Evaluation: features extracted once per checkpoint, the few-shot methods of :mod:`fewshot_cam.fewshot`
run on them, results files, reports and paired comparisons."""

from fewshot_cam.evaluation.paired import PairedComparison, compare_paired
from fewshot_cam.evaluation.protocols import PROTOCOLS, Protocol
from fewshot_cam.evaluation.report import build_report, format_report
from fewshot_cam.evaluation.results import EvalResult, MethodResult, read_result, write_result
from fewshot_cam.evaluation.run import EvalRequest, run_evaluation

__all__ = [
    "EvalRequest", "EvalResult", "MethodResult", "PROTOCOLS", "PairedComparison", "Protocol", "build_report",
    "compare_paired", "format_report", "read_result", "run_evaluation", "write_result",
]
