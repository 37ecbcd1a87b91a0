"""Run configurations in TOML: read, check every key, and say exactly what is wrong.

A config error names the file, the key and what was expected, because a typo in a config
should never silently fall back to a default.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path

from models.simulation.presets import PRESETS
from workflows import paths
from workflows.errors import UserError

#: section -> key -> (type, required)
SCHEMA: dict[str, dict[str, tuple[type, bool]]] = {
    # a simulator run (preset + seed) or an LA's own extract (a path): see _check_data
    "data": {"preset": (str, False), "seed": (int, False), "extract": (str, False)},
    "report": {"suppression_threshold": (int, False), "suppression_marker": (str, False)},
    "gradient": {"prior": (str, False), "sampler": (str, False), "draws": (int, False), "tune": (int, False),
                 "chains": (int, False), "seed": (int, False), "scales": (list, False), "prob": (float, False),
                 "covariates": (list, False), "target_accept": (float, False)},
    "system": {"prior": (str, False), "sampler": (str, False), "draws": (int, False), "tune": (int, False),
               "chains": (int, False), "seed": (int, False), "prob": (float, False), "models": (list, False),
               "first_year": (int, False), "last_year": (int, False), "trend_stages": (list, False),
               "gradient_stages": (list, False), "outcomes": (list, False), "exclude": (list, False),
               "max_las": (int, False), "mass_matrix": (str, False),
               "include_micro_authorities": (bool, False)},
    "sbc": {"preset": (str, False), "replicates": (int, False), "prior": (str, False), "generator_prior": (str, False),
            "draws": (int, False), "tune": (int, False), "chains": (int, False), "n_ranks": (int, False),
            "seed": (int, False)},
    "sensitivity": {"prior_sets": (list, False), "scale": (str, False), "stages": (list, False),
                    "draws": (int, False), "tune": (int, False), "chains": (int, False), "seed": (int, False)},
    "compare": {"variants": (list, False), "scale": (str, False), "stages": (list, False), "prior": (str, False),
                "draws": (int, False), "tune": (int, False), "chains": (int, False), "seed": (int, False)},
    "latent_class": {"k_min": (int, False), "k_max": (int, False), "k": (int, False), "sampler": (str, False),
                     "draws": (int, False), "tune": (int, False), "chains": (int, False), "seed": (int, False),
                     "n_starts": (int, False), "em_seed": (int, False), "prob": (float, False),
                     "min_share": (float, False), "se_multiplier": (float, False), "episodes": (int, False),
                     "workers": (int, False), "regression": (bool, False), "covariates": (list, False),
                     "distal": (bool, False), "misalignment": (bool, False), "final_draws": (int, False),
                     "final_chains": (int, False)},
    "joint": {"k": (int, False), "factors": (list, False), "max_factors": (int, False), "episodes": (int, False),
              "class_slopes": (str, False), "covariates": (list, False), "la_slopes": (bool, False),
              "lsoa_effects": (bool, False), "la_class_weights": (bool, False), "names": (str, False),
              "steepest": (list, False), "three_step": (bool, False), "prior": (str, False),
              "sampler": (str, False), "draws": (int, False), "tune": (int, False), "chains": (int, False),
              "seed": (int, False), "target_accept": (float, False), "n_starts": (int, False),
              "em_seed": (int, False), "prob": (float, False)},
}
DEFAULTS = {"report": {"suppression_threshold": 10, "suppression_marker": "c"}}


#: Sections that read no case-level extract (the LA panel): a config of only these needs no [data].
NO_EXTRACT_SECTIONS = ("system", "report")


def _check_data(path: Path, raw: dict, config: dict) -> None:
    """[data] names either a simulator preset and seed or an LA's own extract (a path, read
    relative to the config file's folder by ``fit``), never both and never neither."""
    data = config["data"]
    if "extract" in data:
        clash = [f"data.{k}" for k in ("preset", "seed") if k in data]
        if clash:
            raise UserError(f"{path}: data.extract and {', '.join(clash)} given together: name either an "
                            "LA's own extract (data.extract) or a simulator run (data.preset and data.seed)")
        if not data["extract"].strip():
            raise UserError(f"{path}: data.extract = {data['extract']!r}: expected the path of an extract file")
    elif "preset" in data:
        if data["preset"] not in PRESETS:
            raise UserError(f"{path}: data.preset = {data['preset']!r}: unknown preset; choose one of "
                            f"{', '.join(PRESETS)}")
        if "seed" not in data:
            raise UserError(f"{path}: missing required key data.seed (a simulator preset needs its seed)")
        if data["seed"] < 0:
            raise UserError(f"{path}: data.seed = {data['seed']}: expected a non-negative integer")
    elif "data" in raw or "system" not in raw or not set(raw) <= set(NO_EXTRACT_SECTIONS):
        raise UserError(f"{path}: missing required key data.preset (with data.seed) or data.extract: give a "
                        "simulator preset and seed, or the path of an LA's own extract")


def resolve(name_or_path: str | Path) -> Path:
    """A config name (``demo``) from workflows/configs, or a path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = paths.CONFIG_DIR / f"{name_or_path}.toml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in paths.CONFIG_DIR.glob("*.toml")))
        raise UserError(f"config {name_or_path!r} not found (looked for {path}); known configs: {known}")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a config file; give the path of a .toml file")
    return path


def read_toml(name_or_path: str | Path) -> tuple[Path, dict]:
    """The resolved path and the parsed TOML (a clear error when it is not TOML)."""
    path = resolve(name_or_path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot be read: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise UserError(f"{path}: not valid TOML: line {line} is not UTF-8 text (byte 0x{data[err.start]:02x}); "
                        "save the file as UTF-8") from None
    try:
        return path, tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: not valid TOML: {err}") from None


def _did_you_mean(name: str, choices) -> str:
    found = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.7)
    return f" (did you mean {found[0]}?)" if found else ""


def raise_problems(path: Path, problems: list[str]) -> None:
    """One UserError naming the file and every problem found (none: nothing raised)."""
    if len(problems) == 1:
        raise UserError(f"{path}: {problems[0]}")
    if problems:
        raise UserError(f"{path}: {len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems))


def section_name_problems(raw: dict, allowed=None, what: str = "") -> list[str]:
    """Every section is known (to ``allowed``, else to SCHEMA) and is a table."""
    allowed = tuple(SCHEMA) if allowed is None else tuple(allowed)
    problems = []
    for section, value in raw.items():
        if section not in allowed:
            problems.append(f"unknown section [{section}]{_did_you_mean(section, allowed)}; "
                            f"{what or 'expected one of'} {', '.join(allowed)}")
        elif not isinstance(value, dict):
            problems.append(f"{section} must be a [table], not {type(value).__name__} {value!r}")
    return problems


def check_section_names(path: Path, raw: dict, allowed=None, what: str = "") -> None:
    """Every section is known (to ``allowed``, else to SCHEMA) and is a table."""
    raise_problems(path, section_name_problems(raw, allowed, what))


def _section_problems(section: str, given: dict) -> tuple[dict, list[str]]:
    keys = SCHEMA[section]
    out = dict(DEFAULTS.get(section, {}))
    problems = []
    for key, value in given.items():
        if key not in keys:
            problems.append(f"unknown key {section}.{key}{_did_you_mean(key, keys)}; expected one of "
                            f"{', '.join(keys)}")
            continue
        kind, _ = keys[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            problems.append(f"{section}.{key} = {value!r}: expected {kind.__name__}")
            continue
        out[key] = value
    for key, (_, required) in keys.items():
        if required and key not in out and key not in given:
            problems.append(f"missing required key {section}.{key}")
    return out, problems


def check_section(path: Path, section: str, given: dict) -> dict:
    """One section's keys and types against SCHEMA, with its defaults filled in."""
    out, problems = _section_problems(section, given)
    raise_problems(path, problems)
    return out


def _check_sections(path: Path, raw: dict, sections, allowed=None, what: str = "") -> dict:
    """Section names, then every key and type of ``sections``: all problems in one error."""
    problems = section_name_problems(raw, allowed, what)
    out = {}
    for section in sections:
        given = raw.get(section, {})
        out[section], found = _section_problems(section, given if isinstance(given, dict) else {})
        problems += found
    raise_problems(path, problems)
    return out


def load_sections(name_or_path: str | Path, sections: tuple[str, ...], *, only: bool = False,
                  what: str = "") -> dict:
    """Just ``sections`` of a config, checked (a verb that needs no ``[data]``, say).  With
    ``only``, any other section is an error (``what`` says what such a config holds)."""
    path, raw = read_toml(name_or_path)
    out: dict = _check_sections(path, raw, sections, sections if only else None, what)
    out["_path"] = str(path)
    out["_sections"] = tuple(raw)
    return out


def load_config(name_or_path: str | Path) -> dict:
    """Read and check a run config; returns sections with defaults filled in.  Every unknown
    section or key and every value of the wrong type is named in one error."""
    path, raw = read_toml(name_or_path)
    config: dict = _check_sections(path, raw, SCHEMA)
    _check_data(path, raw, config)
    config["_path"] = str(path)
    config["_sections"] = tuple(raw)  # which sections the file gave (optional analyses run only then)
    return config
