"""``python -m workflows simulate``: a synthetic extract on the real geography, plus its truth.

Writes, into ``--out`` (moved into place only when everything is written; see :mod:`workflows.atomic`):

- ``extract.csv`` (or ``.parquet``): the case-level extract in the documented schema;
- ``truth.json``: every true parameter, the LA effects and expected rates by decile;
- ``truth_episodes.csv``: each episode's true demand class (for recovery tests only);
- ``truth_lsoa_effects.csv``: the LSOA random effects;
- ``expected_counts.csv``: expected counts per LSOA x year x stage;
- ``manifest.json``: what produced it.

The same preset and seed give byte-identical files (``manifest.json`` aside, which records
the time).  LAs are generated and written one at a time, so memory stays bounded for the
national preset.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from models.areas import add_deprivation
from models.simulation.generator import simulate
from models.simulation.presets import PRESETS, get_preset
from models.simulation.truth import draw_truth
from models.vocabulary import STAGES
from public_data.tables import load_factor_prevalence, load_lsoa_table
from workflows import atomic, paths, provenance
from workflows.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="six-la", choices=list(PRESETS),
                        help="what to simulate (default: six-la)")
    parser.add_argument("--seed", type=int, default=20200101, help="random seed")
    parser.add_argument("--out", required=True, type=Path, help="output folder (new, empty, or an earlier output of the workbench)")
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv",
                        help="extract file format (default: csv)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    out = write_simulation(args.out, args.preset, args.seed, fmt=args.format,
                           progress=not args.quiet)
    print(f"wrote synthetic extract to {out}")
    return 0


def write_simulation(out_dir: Path, preset_name: str, seed: int, fmt: str = "csv",
                     progress: bool = False) -> Path:
    """Simulate ``preset_name`` with ``seed`` and write everything into ``out_dir``."""
    try:
        preset = get_preset(preset_name)
    except KeyError as err:
        raise UserError(str(err)) from None
    if seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {seed}")
    started = time.perf_counter()
    national = add_deprivation(load_lsoa_table())
    share = load_factor_prevalence().set_index("factor")["share"]
    truth = draw_truth(preset, national, share, seed)
    out_dir = Path(out_dir)
    extract_name = f"extract.{fmt}"
    totals = []
    expected_parts = []
    with atomic.atomic_dir(out_dir) as tmp:
        writers = _ChunkWriters(tmp, extract_name, fmt)
        for i, chunk in enumerate(simulate(national, preset, truth, seed), start=1):
            writers.write(chunk)
            expected_parts.append(chunk.expected)
            totals.append(len(chunk.extract))
            if progress:
                print(f"  [{i}/{len(truth['la_codes'])}] {chunk.la_code}: {len(chunk.extract):,} episodes",
                      flush=True)
        writers.close()
        expected = pd.concat(expected_parts, ignore_index=True)
        truth["expected_rate_per_10k_by_decile"] = expected_rates_by_decile(expected, national, truth)
        truth["n_episodes"] = int(sum(totals))
        (tmp / "truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
        expected.to_csv(tmp / "expected_counts.csv", index=False, float_format="%.6g")
        man = provenance.manifest(
            "simulate", inputs={"lsoa_table": paths.REFERENCE_DIR / "lsoa.csv",
                                "factor_prevalence": paths.REFERENCE_DIR / "factor_prevalence.csv"},
            preset=preset.name, seed=seed, format=fmt, n_episodes=int(sum(totals)),
            generator_fingerprint=generator_fingerprint(),
            seconds=round(time.perf_counter() - started, 2),
            outputs={p.name: provenance.sha256_file(p) for p in sorted(tmp.iterdir())},
        )
        (tmp / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
    return out_dir


def generator_fingerprint() -> str:
    """Hash of everything that determines the simulated files besides preset and seed."""
    digest = provenance.source_fingerprint("models.simulation", "models.areas", "models.vocabulary")
    for name in ("lsoa.csv", "factor_prevalence.csv"):
        digest += provenance.sha256_file(paths.REFERENCE_DIR / name)
    return provenance.hashlib.sha256(digest.encode()).hexdigest()


def expected_rates_by_decile(expected: pd.DataFrame, national: pd.DataFrame, truth: dict) -> dict:
    """Expected episodes per 10,000 children aged 0-15 per year, by IDACI decile and stage.

    The denominator is the children of the LSOAs simulated (all years), as
    ``workflows describe`` computes it, so empirical and expected rates are comparable.
    """
    lsoas = national.loc[national["lsoa_code"].isin(expected["lsoa_code"].unique())]
    children = lsoas.groupby("idaci_decile")["children_0_15"].sum() * len(truth["years"])
    counts = expected.groupby("idaci_decile")[list(STAGES)].sum()
    rates = counts.div(children, axis=0) * 10_000
    return {s: {str(int(d)): round(float(v), 4) for d, v in rates[s].items()} for s in STAGES}


class _ChunkWriters:
    """Append each LA's rows to the output files (header once), keeping one LA in memory."""

    def __init__(self, folder: Path, extract_name: str, fmt: str):
        self.folder, self.extract_name, self.fmt = folder, extract_name, fmt
        self.first = True
        self.parquet_writer = None

    def write(self, chunk) -> None:
        mode = "w" if self.first else "a"
        if self.fmt == "csv":
            chunk.extract.to_csv(self.folder / self.extract_name, mode=mode, header=self.first, index=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq
            table = pa.Table.from_pandas(chunk.extract.astype(str), preserve_index=False)
            if self.parquet_writer is None:
                self.parquet_writer = pq.ParquetWriter(self.folder / self.extract_name, table.schema)
            self.parquet_writer.write_table(table)
        chunk.episode_truth.to_csv(self.folder / "truth_episodes.csv", mode=mode, header=self.first, index=False)
        chunk.lsoa_effects.to_csv(self.folder / "truth_lsoa_effects.csv", mode=mode, header=self.first,
                                  index=False, float_format="%.6g")
        self.first = False

    def close(self) -> None:
        if self.parquet_writer is not None:
            self.parquet_writer.close()


def same_simulation(data_dir: Path, preset: str, seed: int) -> bool:
    """True when ``data_dir`` holds an extract and manifest that this preset, seed and
    generator made (so it can be reused instead of simulated again)."""
    manifest = data_dir / "manifest.json"
    if not (manifest.exists() and (data_dir / "extract.csv").exists()):
        return False
    try:
        recorded = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (recorded.get("preset") == preset and recorded.get("seed") == seed
            and recorded.get("generator_fingerprint") == generator_fingerprint())
