"""The data a run config names, found and checked before anything is fitted.

``[data] extract`` is an LA's own extract (a path relative to the config file's folder),
validated where it is and never copied; ``[data] preset`` and ``seed`` name a simulator run,
written into the run's ``data/`` folder and reused while the same preset, seed and generator
made it.  The ``[system]`` section reads the committed LA x year panel instead.  Used by
``fit`` and by the verbs that take ``--config`` (``compare``, ``joint``).
"""

from __future__ import annotations

import os
from pathlib import Path

from models.validation import check_extract
from public_data.panel import PANEL_DIR, PANEL_FILE
from public_data.tables import load_lsoa_table
from workflows.errors import UserError
from workflows.extract_io import (MIN_ASSESSED, contextual_note, load_extract, read_extract_raw,
                                  require_assessed, require_episodes)
from workflows.simulate import same_simulation, write_simulation


def prepare_data(config: dict, data_dir: Path, log=print) -> Path:
    """The config's extract: an LA's own (``[data] extract``, validated where it is, never
    copied), or simulated from ``[data]`` preset and seed into ``data_dir`` (reused when
    unchanged)."""
    if "extract" in config["data"]:
        path = extract_path(config)
        validate_own_extract(path, config["_path"], log)
        return path
    preset, seed = config["data"]["preset"], config["data"]["seed"]
    if same_simulation(data_dir, preset, seed):
        log(f"  reusing the {preset} extract (seed {seed}) in {data_dir}")
    else:
        log(f"  simulating {preset} (seed {seed}) ...")
        write_simulation(data_dir, preset, seed)
    return data_dir / "extract.csv"


def extract_path(config: dict) -> Path:
    """``[data] extract`` as a path: ``~`` expanded, relative to the config file's folder."""
    given = Path(config["data"]["extract"]).expanduser()
    return given if given.is_absolute() else Path(config["_path"]).resolve().parent / given


def validate_own_extract(path: Path, where: str, log=print) -> None:
    """Check an LA's extract against the schema before any fit (UserError with every
    problem, exit code 2, when it has errors).  Nothing is written."""
    if path.is_dir():
        raise UserError(f"{where}: data.extract = {str(path)!r}: is a folder, not a file; give the path of the "
                        "extract itself (a relative path is read from the config file's folder)")
    if not path.is_file():
        raise UserError(f"{where}: data.extract = {str(path)!r}: file not found (a relative path is read "
                        "from the config file's folder)")
    report = check_extract(read_extract_raw(path), load_lsoa_table(), source=path.name)[0]
    if not report.ok:
        raise UserError(f"{where}: data.extract {path.name} does not pass validation; nothing was fitted.\n"
                        + report.format(max_per_rule=50), exit_code=2)
    log(f"  using your extract {path.name} (validated: {report.summary()}; not copied into the run folder)")


#: Sections that model the assessment factors (they need assessed episodes).
FACTOR_SECTIONS = ("latent_class", "joint")


def check_extract_supports(sections, extract: Path, log=print) -> None:
    """A UserError, before any fit, when the extract lacks what a section needs (enough
    episodes; assessed episodes with factors for the latent class and joint models); a note
    when it has too few LAs for the between-LA (contextual) effect."""
    data, _ = load_extract(extract, load_lsoa_table(), salt=os.urandom(32))  # ids never needed
    name = Path(extract).name
    if any(s in ("gradient", "sensitivity", "compare") for s in sections):
        require_episodes(name, data.episodes)
    for section in FACTOR_SECTIONS:
        if section in sections:
            require_assessed(name, data.episodes, data.factors, f"[{section}]", MIN_ASSESSED)
    if any(s in ("gradient", "sensitivity", "compare", "joint") for s in sections):
        note = contextual_note(name, data.episodes)
        if note:
            log(f"  {note}")


def panel_path() -> Path:
    """The LA x year panel the ``[system]`` section fits (the committed one)."""
    path = PANEL_DIR / PANEL_FILE
    if not path.is_file():
        raise UserError(f"panel {path} not found; rebuild it with `python -m workflows build-panel`")
    return path
