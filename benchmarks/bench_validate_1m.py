"""``python -m workflows validate`` on a 1,000,000-row extract: seconds and peak memory.

Run: ``.venv/bin/python benchmarks/bench_validate_1m.py [--rows N] [--keep DIR]``.  Builds the
extract from the tiny simulation (its rows repeated, episode ids made unique), then runs the
verb as users run it, in a subprocess, three times: the clean file, the same file with one
byte that is not UTF-8 on its last row (the streamed row scan must find it), and with an
unknown ethnicity code on every tenth row (100,000 validation errors).  Prints wall seconds
and the subprocess's peak resident memory; results are recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from workflows.simulate import write_simulation  # noqa: E402


def build(folder: Path, n_rows: int) -> dict[str, Path]:
    """The clean extract and its two faulty variants, written line by line."""
    write_simulation(folder / "sim", "tiny", 1)
    lines = (folder / "sim" / "extract.csv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], [line.split(",") for line in lines[1:]]
    episode = header.split(",").index("episode_id")
    ethnicity = header.split(",").index("ethnicity")
    paths = {name: folder / f"{name}.csv" for name in ("clean", "last-row-not-utf8", "every-10th-row-bad")}
    handles = {name: open(path, "wb") for name, path in paths.items()}
    try:
        for handle in handles.values():
            handle.write((header + "\n").encode())
        for i in range(n_rows):
            row = list(rows[i % len(rows)])
            row[episode] = f"{row[episode]}R{i // len(rows)}"
            line = ",".join(row) + "\n"
            handles["clean"].write(line.encode())
            if i == n_rows - 1:
                row[ethnicity] = "WéRI"
                handles["last-row-not-utf8"].write((",".join(row) + "\n").encode("cp1252"))
            else:
                handles["last-row-not-utf8"].write(line.encode())
            if i % 10 == 0:
                row[ethnicity] = "ZZZZ"
                line = ",".join(row) + "\n"
            handles["every-10th-row-bad"].write(line.encode())
    finally:
        for handle in handles.values():
            handle.close()
    return paths


#: Runs its arguments as a child and reports the child's peak RSS (KiB on Linux) on stderr.
_MEASURE = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print('PEAK', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
            "sys.exit(r.returncode)")


def run_verb(path: Path) -> tuple[int, float, float, str]:
    """(exit code, wall seconds, peak RSS in MB of the verb's process, its last line)."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "workflows", "validate",
                             str(path), "--max-per-rule", "3"], cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak_line = next(line for line in result.stderr.splitlines() if line.startswith("PEAK "))
    shown = [line for line in (result.stdout + result.stderr).splitlines() if line and not line.startswith("PEAK ")]
    return result.returncode, seconds, int(peak_line.split()[1]) / 1024, shown[-1] if shown else ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, default=None, help="build the files here and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        paths = build(folder, args.rows)
        print(f"built {args.rows:,} rows ({paths['clean'].stat().st_size / 1e6:.0f} MB) in "
              f"{time.perf_counter() - t:.0f} s")
        print(f"{'file':<22}{'exit':>5}{'seconds':>9}{'peak RSS MB':>13}  last line")
        for name, path in paths.items():
            code, seconds, peak, last = run_verb(path)
            print(f"{name:<22}{code:>5}{seconds:>9.1f}{peak:>13.0f}  {last[:90]}")
    print(f"cpu count {os.cpu_count()}")


if __name__ == "__main__":
    main()
