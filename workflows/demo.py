"""``python -m workflows demo``: the main job, end to end on the built-in synthetic data.

Simulates the configured preset (reused if the same preset and seed are already there),
writes the descriptive report, then fits and reports the social gradient models and the
latent class (demand) model, each reused when nothing changed.  Optional analyses run only
when the config has their section.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from models.suppression import SuppressionRule
from workflows import atomic, paths
from workflows.config import load_config
from workflows.describe import write_describe_report
from workflows.errors import UserError
from workflows.gradient import GradientRun, write_gradient_report
from workflows.latent_class import LatentClassRun, write_latent_class_report
from workflows.simulate import write_simulation


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="demo", help="config name or TOML path (default: demo)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: results/<config>)")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    out = atomic.output_dir(args.out, paths.RESULTS_DIR / Path(config["_path"]).stem)
    started = time.perf_counter()
    sections = config.get("_sections", ())
    steps = 2 + ("gradient" in sections) + ("latent_class" in sections)
    # Check every section before the first fit, so a typo fails in seconds, not minutes.
    gradient_run = GradientRun.from_config(config["gradient"], config["_path"]) if "gradient" in sections else None
    lc_run = (LatentClassRun.from_config(config["latent_class"], config["_path"])
              if "latent_class" in sections else None)
    try:
        rule = SuppressionRule(config["report"]["suppression_threshold"], config["report"]["suppression_marker"])
    except ValueError as err:
        raise UserError(f"{config['_path']}: {err}") from None
    if "preset" not in config["data"]:
        raise UserError(f"{config['_path']}: the demo runs on a simulator preset ([data] preset and seed); "
                        "an LA's own extract is fitted with `python -m workflows fit --config ...`")
    atomic.stamp_run_folder(out, "demo")
    data_dir = out / "data"
    preset, seed = config["data"]["preset"], config["data"]["seed"]
    if _same_simulation(data_dir, preset, seed):
        print(f"[1/{steps}] reusing the {preset} extract (seed {seed}) in {data_dir}")
    else:
        print(f"[1/{steps}] simulating {preset} (seed {seed}) ...", flush=True)
        write_simulation(data_dir, preset, seed)
    print(f"[2/{steps}] describing the extract ...", flush=True)
    reports = [write_describe_report(data_dir / "extract.csv", out / "describe", rule,
                                     title=f"Synthetic {preset} system: descriptive report")]
    step = 2
    if gradient_run is not None:
        step += 1
        print(f"[{step}/{steps}] social gradient models ...", flush=True)
        reports.append(write_gradient_report(
            data_dir / "extract.csv", out / "gradient", gradient_run, rule,
            title=f"Synthetic {preset} system: social gradient and inverse intervention",
            log=lambda m: print(m, flush=True)))
    if lc_run is not None:
        step += 1
        print(f"[{step}/{steps}] latent class (demand) model ...", flush=True)
        reports.append(write_latent_class_report(
            data_dir / "extract.csv", out / "latent_class", lc_run, rule,
            title=f"Synthetic {preset} system: demand classes at assessment",
            log=lambda m: print(m, flush=True)))
    print(f"\ndone in {time.perf_counter() - started:.0f} s. Outputs:")
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(paths.REPO_ROOT) if path.is_relative_to(paths.REPO_ROOT) else path}")
    print()
    for report_dir in reports:
        print(f"report: {report_dir / 'report.html'}")
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
