"""Data-layer benchmark: simulation, validation and description, timed side by side.

Run: ``.venv/bin/python benchmarks/bench_data_layer.py [--national]``.  Prints wall time,
episodes per second and peak memory; results are recorded in benchmarks/RESULTS.md.
The national preset (about 2.9 million episodes) is opt-in because it takes a minute.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd

from models.suppression import SuppressionRule
from models.validation import validate_extract
from public_data.tables import load_lsoa_table
from workflows.describe import write_describe_report
from workflows.simulate import write_simulation


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--national", action="store_true", help="also simulate the national preset")
    args = parser.parse_args()
    presets = ["tiny", "six-la"] + (["national"] if args.national else [])
    lsoa = load_lsoa_table()
    print(f"{'step':<28}{'episodes':>12}{'seconds':>10}{'episodes/s':>14}{'peak MB':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in presets:
            out = Path(tmp) / preset
            t = time.perf_counter()
            write_simulation(out, preset, seed=1)
            sec = time.perf_counter() - t
            n = sum(1 for _ in open(out / "extract.csv")) - 1
            print(f"{'simulate ' + preset:<28}{n:>12,}{sec:>10.2f}{n / sec:>14,.0f}{peak_mb():>10.0f}")
            if preset == "national":
                continue
            raw = pd.read_csv(out / "extract.csv", dtype=str, keep_default_na=False)
            t = time.perf_counter()
            report = validate_extract(raw, lsoa, source=preset)
            sec = time.perf_counter() - t
            assert report.ok
            print(f"{'validate ' + preset:<28}{n:>12,}{sec:>10.2f}{n / sec:>14,.0f}{peak_mb():>10.0f}")
            t = time.perf_counter()
            write_describe_report(out / "extract.csv", Path(tmp) / f"describe-{preset}", SuppressionRule())
            sec = time.perf_counter() - t
            print(f"{'describe (load+report) ' + preset:<28}{n:>12,}{sec:>10.2f}{n / sec:>14,.0f}{peak_mb():>10.0f}")
    print(f"cpu count {os.cpu_count()}")


if __name__ == "__main__":
    main()
