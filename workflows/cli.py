"""Command-line dispatch.  Each verb lives in its own module with ``add_arguments`` and ``run``.

A :class:`workflows.errors.UserError` becomes a clear message and an exit code, never a
traceback: users of this tool are analysts, not Python developers.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from workflows.errors import UserError

#: verb -> (module, one-line help).  Modules are imported lazily so ``--help`` is fast.
VERBS: dict[str, tuple[str, str]] = {
    "build-reference": ("workflows.build_reference", "rebuild data/reference from data/raw"),
    "build-panel": ("workflows.build_panel", "rebuild data/panel/la_panel.csv (harmonised LA x year panel) from data/raw"),
    "simulate": ("workflows.simulate", "write a synthetic extract and its truth.json"),
    "validate": ("workflows.validate", "check a case-level extract against the schema"),
    "describe": ("workflows.describe", "descriptive report of an extract (funnel, rates, factors)"),
    "gradient": ("workflows.gradient", "fit the social gradient models to an extract and report them"),
    "sensitivity": ("workflows.sensitivity", "refit the gradient model under each prior set; power-scaling"),
    "fit": ("workflows.fit", "fit every model section of a run config into results/<run>/ (cached, resumable)"),
    "report": ("workflows.report", "(re)write a fitted run's report.md/report.html without refitting"),
    "compare": ("workflows.compare", "compare model variants by PSIS-LOO with Pareto-k diagnostics"),
    "sbc": ("workflows.sbc", "simulation-based calibration of the gradient model (rank ECDFs)"),
    "latent-class": ("workflows.latent_class", "demand classes: choose K by PSIS-LOO, named profiles with intervals"),
    "joint": ("workflows.joint", "demand classes x social gradients in one model (class gradients, steepest class)"),
    "system": ("workflows.system", "fit the system-conditions models to the LA x year panel and report them"),
    "demo": ("workflows.demo", "the main job: simulate six-la and report on it"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workflows",
        description="Bayesian multilevel workbench for inequalities in children's social care.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, (module_name, help_text) in VERBS.items():
        verb_parser = sub.add_parser(verb, help=help_text, description=help_text)
        verb_parser.set_defaults(_module=module_name)
        importlib.import_module(module_name).add_arguments(verb_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was left in place", file=sys.stderr)
        return 130
