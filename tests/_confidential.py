"""The confidentiality check shared by the workflow tests: no value that identifies an
episode (child or episode id, LSOA code, referral date) appears in any written report,
table or manifest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def assert_no_episode_values(out: Path, extract_path: Path) -> None:
    extract = pd.read_csv(extract_path, dtype=str)
    secrets = set(extract["child_id"]) | set(extract["episode_id"]) | set(extract["lsoa_code"]) \
        | set(extract["referral_date"])
    for path in Path(out).rglob("*"):
        if path.suffix in {".md", ".html", ".csv", ".json"}:
            text = path.read_text()
            leaked = [s for s in list(secrets)[:5000] if s in text]
            assert not leaked, (path.name, leaked[:3])
