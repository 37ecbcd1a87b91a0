"""Nothing case-level leaves in anything the workbench writes, from any verb.

One run of every verb that reads case-level data, on the tiny preset's extract used as an
LA's own file (short chains: this checks what is written, not what is estimated; the model
verbs run as the sections of one ``fit``, which calls the same writers as ``gradient``,
``sensitivity``, ``compare``, ``latent-class`` and ``joint``), then one
scan of everything written and everything printed: tables, reports, manifests, logs, the
figures' embedded text and every NetCDF posterior (all groups, all coordinates).  It looks
for child and episode ids, LSOA codes, referral dates and dates of birth, and for counts
from 1 to threshold - 1 in count columns of published tables.  ``system`` reads only the
public LA panel and ``sbc`` only data it simulates from a design, so neither has case-level
data to leak and neither is run here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from _seeds import seed
from workflows import paths

THRESHOLD = 10
#: The fixture runs several short fits (about 3 minutes alone on 2 cores).
pytestmark = pytest.mark.timeout(1800)

RUN_CONFIG = """
[data]
extract = "extract.csv"

[report]
suppression_threshold = {threshold}

[gradient]
chains = 2
draws = 60
tune = 60
seed = {s1}
scales = ["population"]

[sensitivity]
prior_sets = ["wide"]       # one set: the writers are the same for any number
scale = "population"
stages = ["referral"]
chains = 2
draws = 60
tune = 60
seed = {s2}

[compare]
variants = ["full", "no_lsoa_effects"]
stages = ["referral"]
chains = 2
draws = 60
tune = 60
seed = {s3}

[latent_class]
k_min = 2                   # one K: the K-selection writers run all the same
k_max = 2
chains = 2
draws = 60
tune = 60
seed = {s4}
n_starts = 3
regression = true
misalignment = true

[joint]
k = 2
max_factors = 6
episodes = 0
three_step = false
steepest = []
chains = 2
draws = 60
tune = 60
seed = {s5}
n_starts = 3
"""

DEMO_CONFIG = """
[data]
preset = "tiny"
seed = {s1}

[report]
suppression_threshold = {threshold}
"""

#: Count columns of published tables: a stage name, or a name that says it counts.
COUNT_COLUMN = re.compile(r"^(referral|assessment|s47|icpc|cpp|lac)$|episodes|count|^n$|^n_|cases|plans",
                          re.IGNORECASE)


def _cli(*args, cwd=None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "workflows", *map(str, args)], cwd=cwd or paths.REPO_ROOT,
                            capture_output=True, text=True, timeout=1500,
                            env={**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-3000:])
    return result


@pytest.fixture(scope="module")
def everything_written(tmp_path_factory):
    """Run every verb; return (folder of outputs, printed logs, the extract's secrets)."""
    root = tmp_path_factory.mktemp("confidential")
    sim, la, out = root / "sim", root / "la", root / "out"
    _cli("simulate", "--preset", "tiny", "--seed", seed(11), "--out", sim, "--quiet")
    la.mkdir()
    shutil.copy(sim / "extract.csv", la / "extract.csv")  # the LA's own file, outside any output
    extract = la / "extract.csv"
    (la / "run.toml").write_text(RUN_CONFIG.format(threshold=THRESHOLD, s1=seed(1), s2=seed(2),
                                                   s3=seed(3), s4=seed(4), s5=seed(5)))
    (la / "demo.toml").write_text(DEMO_CONFIG.format(threshold=THRESHOLD, s1=seed(7)))
    logs = []
    for args in (
        ("validate", extract),
        ("describe", extract, "--out", out / "describe"),
        ("fit", "--config", la / "run.toml", "--out", out / "run", "--workers", "1", "--no-progress"),
        ("report", out / "run"),
        ("demo", "--config", la / "demo.toml", "--out", out / "demo"),
    ):
        result = _cli(*args)
        logs.append(result.stdout + result.stderr)
    episodes = pd.read_csv(extract, dtype=str)
    secrets = {}
    for column in ("child_id", "episode_id", "lsoa_code", *(c for c in episodes if c.endswith("date")),
                   "date_of_birth"):
        secrets[column] = set(episodes[column].dropna())
    # The simulator's own files hold truth, not outputs of an analysis: only what the verbs wrote.
    return out, "\n".join(logs), secrets


def _texts(out: Path):
    for path in sorted(out.rglob("*")):
        if path.is_relative_to(out / "demo" / "data"):
            continue  # the demo's own simulated extract: synthetic by design, not the LA's data
        if path.suffix in {".md", ".html", ".csv", ".json", ".txt", ".toml", ".log"}:
            yield path, path.read_text(encoding="utf-8", errors="replace")
        elif path.suffix == ".png":
            yield path, _png_text(path.read_bytes())


def _png_text(data: bytes) -> str:
    """The text chunks a PNG carries (tEXt/iTXt/zTXt): where metadata could hide values."""
    import struct
    import zlib

    out, pos = [], 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"tEXt":
            out.append(body.decode("latin-1"))
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            out.append(key.decode("latin-1") + " " + zlib.decompress(rest[1:]).decode("latin-1"))
        elif kind == b"iTXt":
            out.append(body.decode("utf-8", errors="replace"))
        pos += 12 + length
    return "\n".join(out)


def test_every_verb_wrote_something(everything_written):
    out, _, _ = everything_written
    for folder in ("describe", "run/gradient", "run/sensitivity", "run/compare", "run/latent_class", "run/joint",
                   "demo/describe"):
        assert (out / folder).is_dir(), folder
    assert list(out.rglob("*.nc")), "no posterior written: the NetCDF scan would be vacuous"


def test_no_episode_value_in_any_text_log_or_figure(everything_written):
    out, logs, secrets = everything_written
    assert all(secrets[c] for c in ("child_id", "episode_id", "lsoa_code", "referral_date"))
    texts = [("printed logs", logs), *((p.relative_to(out).as_posix(), t) for p, t in _texts(out))]
    assert len(texts) > 50
    for column, values in secrets.items():
        pattern = re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True) if len(v) >= 6))
        for name, text in texts:
            hit = pattern.search(text)
            assert hit is None, (column, name, hit.group(0) if hit else None)


def test_no_case_level_array_or_value_in_any_posterior(everything_written):
    import arviz as az
    from workflows.posterior_export import is_private_dim

    out, _, secrets = everything_written
    everything = {v for values in secrets.values() for v in values if len(v) >= 6}
    for path in sorted(out.rglob("*.nc")):
        idata = az.from_netcdf(str(path))
        groups = list(idata.groups())
        assert "observed_data" not in groups and "constant_data" not in groups, (path, groups)
        for group in groups:
            ds = idata[group]
            for dim in ds.dims:
                if group != "log_likelihood":  # pointwise, for PSIS-LOO of a cached comparison
                    assert not is_private_dim(str(dim)), (path.name, group, dim)
            for name, coord in ds.coords.items():
                if coord.dtype.kind in "OUS":
                    leaked = everything.intersection(map(str, coord.values.ravel().tolist()))
                    assert not leaked, (path.name, group, name, sorted(leaked)[:3])
            for key, value in ds.attrs.items():
                assert not any(s in str(value) for s in everything), (path.name, group, key)


def test_no_small_count_in_any_published_table(everything_written):
    out, _, _ = everything_written
    checked = 0
    for path in sorted(out.rglob("*.csv")):
        table = pd.read_csv(path, dtype=str)
        for column in table.columns:
            if not COUNT_COLUMN.search(str(column)):
                continue
            values = table[column].dropna()
            whole = values[values.str.fullmatch(r"\d+")]
            small = whole[whole.astype(int).between(1, THRESHOLD - 1)]
            assert small.empty, (path.relative_to(out).as_posix(), column, small.tolist()[:5])
            checked += len(values)
    assert checked > 100, checked  # the scan saw real count columns


def test_manifests_name_the_extract_by_file_name_only(everything_written):
    out, logs, _ = everything_written
    la_folder = str(out.parent / "la")
    for path in out.rglob("manifest.json"):
        assert la_folder not in path.read_text(), path
    man = json.loads((out / "run" / "manifest.json").read_text())
    assert man["data"]["extract"] == "extract.csv"
