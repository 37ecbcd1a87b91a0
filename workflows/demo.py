"""``python -m workflows demo``: the main job, end to end on the built-in synthetic data.

Simulates the configured preset (reused if the same preset and seed are already there),
writes the descriptive report, then fits and reports the social gradient models (reused
when nothing changed).  The latent class and joint models join here as they land.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from models.suppression import SuppressionRule
from workflows import paths
from workflows.config import load_config
from workflows.describe import write_describe_report
from workflows.errors import UserError
from workflows.gradient import GradientRun, write_gradient_report
from workflows.simulate import write_simulation


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="demo", help="config name or TOML path (default: demo)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: results/<config>)")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    out = args.out or paths.RESULTS_DIR / Path(config["_path"]).stem
    started = time.perf_counter()
    data_dir = out / "data"
    preset, seed = config["data"]["preset"], config["data"]["seed"]
    if _same_simulation(data_dir, preset, seed):
        print(f"[1/3] reusing the {preset} extract (seed {seed}) in {data_dir}")
    else:
        print(f"[1/3] simulating {preset} (seed {seed}) ...", flush=True)
        write_simulation(data_dir, preset, seed)
    print("[2/3] describing the extract ...", flush=True)
    try:
        rule = SuppressionRule(config["report"]["suppression_threshold"], config["report"]["suppression_marker"])
    except ValueError as err:
        raise UserError(f"{config['_path']}: {err}") from None
    report_dir = write_describe_report(data_dir / "extract.csv", out / "describe", rule,
                                       title=f"Synthetic {preset} system: descriptive report")
    gradient_dir = None
    if "gradient" in config.get("_sections", ()):
        print("[3/3] social gradient models ...", flush=True)
        run_config = GradientRun.from_config(config["gradient"], config["_path"])
        gradient_dir = write_gradient_report(
            data_dir / "extract.csv", out / "gradient", run_config, rule,
            title=f"Synthetic {preset} system: social gradient and inverse intervention",
            log=lambda m: print(m, flush=True))
    print(f"\ndone in {time.perf_counter() - started:.0f} s. Outputs:")
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(paths.REPO_ROOT) if path.is_relative_to(paths.REPO_ROOT) else path}")
    print(f"\nreport: {report_dir / 'report.html'}")
    if gradient_dir is not None:
        print(f"report: {gradient_dir / 'report.html'}")
    return 0


def _same_simulation(data_dir: Path, preset: str, seed: int) -> bool:
    manifest = data_dir / "manifest.json"
    if not (manifest.exists() and (data_dir / "extract.csv").exists()):
        return False
    try:
        recorded = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    from workflows.simulate import generator_fingerprint

    return (recorded.get("preset") == preset and recorded.get("seed") == seed
            and recorded.get("generator_fingerprint") == generator_fingerprint())
