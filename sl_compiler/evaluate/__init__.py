"""Students trained on artifacts: regimes, protocols, batched students, baselines and tables.

``evaluate(artifacts, protocol, ...)`` runs a whole evaluation and returns its result dict;
``markdown_table``, ``write_results`` and ``report`` turn results into tables and files.
"""

from .data import EvalSet, eval_set
from .protocol import Protocol, available, default_protocol, load_protocol
from .run import evaluate
from .tables import load_results, markdown_table, report, report_markdown, write_results
from .trainer import StudentTrainer, cell_result, choose_lr, lr_groups, seed_groups, train_groups

__all__ = [
    "EvalSet",
    "Protocol",
    "StudentTrainer",
    "available",
    "cell_result",
    "choose_lr",
    "default_protocol",
    "eval_set",
    "evaluate",
    "load_protocol",
    "load_results",
    "lr_groups",
    "markdown_table",
    "report",
    "report_markdown",
    "seed_groups",
    "train_groups",
    "write_results",
]
