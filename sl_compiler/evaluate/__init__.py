"""Students trained on artifacts: regimes, protocols, batched students, baselines and tables.

``evaluate(artifacts, protocol, ...)`` runs a whole evaluation and returns its result dict;
``markdown_table``, ``write_results`` and ``report`` turn results into tables and files.
"""

from .data import EvalSet, eval_set
from .protocol import Protocol, available, default_protocol, load_protocol
from .run import evaluate
from .tables import load_results, markdown_table, report, report_markdown, write_results
from .trainer import StudentTrainer, evaluate_students, select_lr, train_students

__all__ = [
    "EvalSet",
    "Protocol",
    "StudentTrainer",
    "available",
    "default_protocol",
    "eval_set",
    "evaluate",
    "evaluate_students",
    "load_protocol",
    "load_results",
    "markdown_table",
    "report",
    "report_markdown",
    "select_lr",
    "train_students",
    "write_results",
]
