"""Command-line dispatch.  Each verb lives in its own module with ``add_arguments`` and ``run``.

Only the verb that runs is imported (``--help`` and ``validate`` never load PyMC).  A
:class:`workflows.errors.UserError` becomes a clear message and an exit code, never a
traceback: users of this tool are analysts, not Python developers.  Every verb that writes
an output folder takes ``--overwrite`` and follows the one rule of :mod:`workflows.atomic`,
checked before any work starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from workflows import atomic, runtime
from workflows.errors import UserError

#: verb -> (module, one-line help).
VERBS: dict[str, tuple[str, str]] = {
    "build-reference": ("public_data.reference", "rebuild data/reference from data/raw"),
    "build-panel": ("public_data.panel", "rebuild data/panel/la_panel.csv (harmonised LA x year panel) from data/raw"),
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
    "notebooks": ("workflows.notebooks", "execute the story notebooks and write them as HTML with their outputs"),
}

DESCRIPTION = "Bayesian multilevel workbench for inequalities in children's social care."


def build_parser(verbs: list[str] | tuple[str, ...] | None = None) -> argparse.ArgumentParser:
    """The parser, with the arguments of ``verbs`` (importing their modules; None: every
    verb); every verb is listed with its one-line help either way."""
    parser = argparse.ArgumentParser(prog="python -m workflows", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, (module_name, help_text) in VERBS.items():
        verb_parser = sub.add_parser(name, help=help_text, description=help_text)
        verb_parser.set_defaults(_module=module_name)
        if verbs is None or name in verbs:
            importlib.import_module(module_name).add_arguments(verb_parser)
            if any("--out" in action.option_strings for action in verb_parser._actions):
                verb_parser.add_argument(
                    "--overwrite", action="store_true",
                    help="write into an --out folder that holds files the workbench did not write "
                         "(same-named files are replaced; every other file is kept)")
    return parser


def _chosen_verb(argv: list[str]) -> str | None:
    """The verb named on the command line: its first argument that is not an option."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in VERBS else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    runtime.prepare()
    try:
        chosen = _chosen_verb(argv)
        parser = build_parser([chosen] if chosen else [])
        args = parser.parse_args(argv)
        module = importlib.import_module(args._module)
        overwrite = bool(getattr(args, "overwrite", False))
        with atomic.allow_overwrite(overwrite):
            if getattr(args, "out", None) is not None:  # refused before any work starts
                args.out = atomic.check_output_dir(args.out, overwrite, what="--out")
            return int(module.run(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was left in place", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `validate big.csv | head`: the reader has gone
        sys.stderr.close()
        return 0
    except MemoryError:
        print("error: out of memory: the machine cannot hold this input; nothing half-written was "
              "left in place", file=sys.stderr)
        return 2
    except OSError as err:  # a disk that is full or read-only, a folder that vanished
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err}; nothing half-written was left in place", file=sys.stderr)
        return 2
