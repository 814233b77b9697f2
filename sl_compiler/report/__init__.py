"""Reports people look at: result files gathered into one static HTML page, or markdown, or JSON.

    inputs = load_inputs(["results/c10.json", "sweep/sweep.json"])   # checked, by kind
    write_html(inputs, "report.html")                               # one self-contained page
    print(to_markdown(inputs))

Modules: :mod:`.inputs` (the kinds of results and their checks), :mod:`.html` (escaping, sortable
tables, inline figures, the page with its content policy), :mod:`.page` (the report's sections),
:mod:`.artifacts` (the artifacts the results name, when they can be read here), :mod:`.markdown`.
The figures are drawn by :mod:`sl_compiler.plot`; the image grid by :mod:`sl_compiler.artifact.grid`.
"""

from .inputs import ANALYSIS_KIND, KINDS, SWEEP_KIND, Input, load_inputs
from .markdown import evaluation_json, to_markdown
from .page import render, write_html

__all__ = ["ANALYSIS_KIND", "KINDS", "SWEEP_KIND", "Input", "evaluation_json", "load_inputs", "render", "to_markdown", "write_html"]
