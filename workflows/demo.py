"""``python -m workflows demo``: the main job, end to end on the built-in synthetic data.

Simulates the configured preset (reused if the same preset and seed are already there),
writes the descriptive report, then fits and reports the social gradient models and the
latent class (demand) model, each reused when nothing changed.  Optional analyses run only
when the config has their section; ``--notebooks`` also executes the story notebooks (short
chains) and renders them as HTML into ``notebooks/``.  Last, ``index.html`` links every report,
figure and rendered notebook of the run, and the run's manifest lists every file in it.
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
from workflows.notebooks import write_notebooks_html
from workflows.simulate import same_simulation, write_simulation


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="demo", help="config name or TOML path (default: demo)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: results/<config>)")
    parser.add_argument("--notebooks", action="store_true",
                        help="also execute the story notebooks (short chains, minutes each) and render them as HTML")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    out = atomic.output_dir(args.out, paths.RESULTS_DIR / Path(config["_path"]).stem)
    started = time.perf_counter()
    sections = config.get("_sections", ())
    with_notebooks = bool(getattr(args, "notebooks", False))
    steps = 2 + ("gradient" in sections) + ("latent_class" in sections) + with_notebooks
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
    _mark_running(out)
    data_dir = out / "data"
    preset, seed = config["data"]["preset"], config["data"]["seed"]
    if same_simulation(data_dir, preset, seed):
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
    if with_notebooks:
        step += 1
        print(f"[{step}/{steps}] story notebooks (short chains) ...", flush=True)
        write_notebooks_html(out / "notebooks", log=lambda m: print(f"  {m}", flush=True))
    write_index(out, f"Demo run: synthetic {preset} system (seed {seed})")
    _mark_done(out, time.perf_counter() - started)
    print(f"\ndone in {time.perf_counter() - started:.0f} s. Outputs:")
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(paths.REPO_ROOT) if path.is_relative_to(paths.REPO_ROOT) else path}")
    print()
    for report_dir in reports:
        print(f"report: {report_dir / 'report.html'}")
    print(f"index: {out / INDEX}")
    return 0


INDEX = "index.html"
#: Section folders in the order a reader meets them, with their headings.
_PARTS = (("describe", "Descriptive report"), ("gradient", "Social gradient and inverse intervention"),
          ("latent_class", "Demand classes at assessment"), ("notebooks", "Story notebooks (executed)"))


def index_entries(out: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """What ``index.html`` links, by part: (heading, [(relative href, text)]): each part's
    reports, figures and rendered notebooks found in the run folder."""
    parts = []
    for folder, heading in _PARTS:
        base = out / folder
        if not base.is_dir():
            continue
        links = [(f"{folder}/{name}", name) for name in ("report.html", "report.md") if (base / name).is_file()]
        links += [(f"{folder}/{p.relative_to(base).as_posix()}", p.stem.replace("_", " "))
                  for p in sorted(base.glob("*.html")) if p.name not in ("report.html", INDEX)]
        links += [(f"{folder}/{p.relative_to(base).as_posix()}", f"figure: {p.stem.replace('_', ' ')}")
                  for p in sorted(base.rglob("*.png"))]
        if links:
            parts.append((heading, links))
    return parts


def write_index(out: Path, title: str) -> Path:
    """``index.html`` of a run folder (written atomically): every report, figure and
    rendered notebook in it, by part, each linked relative to the folder."""
    import html

    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, links in index_entries(out):
        body.append(f"<h2>{html.escape(heading)}</h2><ul>")
        for href, text in links:
            img = (f'<br><img src="{html.escape(href)}" alt="{html.escape(text)}" loading="lazy">'
                   if href.endswith(".png") else "")
            body.append(f'<li><a href="{html.escape(href)}">{html.escape(text)}</a>{img}</li>')
        body.append("</ul>")
    style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
             "li{margin:.3rem 0}img{max-width:24rem;border:1px solid #ddd;margin:.2rem 0}")
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
    return atomic.write_text(out / INDEX, page)


def _mark_running(out: Path) -> None:
    """While a run fills the folder, its manifest lists no outputs (a folder the workbench is
    writing is its own as a whole), so a run killed after adding a section is not refused."""
    man = atomic.read_manifest(out) or {}
    if "outputs" in man or man.get("status") != "started":
        man = {k: v for k, v in man.items() if k != "outputs"}
        man.update(status="started")
        atomic.write_text(out / atomic.MANIFEST, json.dumps(man, indent=1, default=str) + "\n")


def _mark_done(out: Path, seconds: float) -> None:
    """The finished run's manifest: every file in the folder listed as an output, the
    index included (files a user adds later are then told apart from the run's)."""
    man = atomic.read_manifest(out) or {}
    outputs = atomic.output_files(out)
    man.update({atomic.OWNER_KEY: atomic.OWNER, "command": "demo", "status": "done",
                "seconds": round(seconds, 1), "index": INDEX, "outputs": outputs})
    atomic.write_text(out / atomic.MANIFEST, json.dumps(man, indent=1, default=str) + "\n")
