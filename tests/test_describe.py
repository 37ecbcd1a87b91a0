"""``write_describe_report`` on the tiny simulation: files, numbers, and confidentiality."""

from __future__ import annotations

import json
import re
import shutil
import sys

import pandas as pd
import pytest

from _seeds import seed
from models.suppression import SuppressionRule
from _links import broken_links
from models.vocabulary import STAGES
from public_data.tables import load_lsoa_table
from workflows.describe import write_describe_report
from workflows.errors import UserError
from workflows.simulate import write_simulation

THRESHOLD = 10
STAGE_FLAGS = ["assessment", "s47", "icpc", "cpp", "lac"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("describe") / "sim"
    write_simulation(out, "tiny", seed=seed(3))
    raw = pd.read_csv(out / "extract.csv", dtype=str, keep_default_na=False)
    return out / "extract.csv", raw


@pytest.fixture(scope="module")
def report(sim, tmp_path_factory):
    extract_path, _ = sim
    out = tmp_path_factory.mktemp("describe-out") / "report"
    assert write_describe_report(extract_path, out, SuppressionRule()) == out
    return out


def _table(report, name):
    return pd.read_csv(report / "tables" / f"{name}.csv", dtype=str, keep_default_na=False,
                       index_col=0)


def test_report_folder_has_every_output(report):
    for name in ("report.md", "report.html", "manifest.json"):
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    tables = {p.name for p in (report / "tables").glob("*.csv")}
    assert {"funnel.csv", "decile_counts.csv", "decile_rates.csv", "gradient.csv",
            "factors.csv"} <= tables
    figures = sorted((report / "figures").glob("*.png"))
    assert len(figures) == 3
    for fig in figures:
        assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (report / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 3  # self-contained
    assert broken_links(report / "report.html") == []
    assert html.index('id="key-figure"') < html.index("<h2>")  # the key figure opens the report
    md = (report / "report.md").read_text(encoding="utf-8")
    for fig in figures:
        assert f"figures/{fig.name}" in md
    man = json.loads((report / "manifest.json").read_text())
    assert man["command"] == "describe"
    assert man["suppression"] == {"threshold": THRESHOLD, "marker": "c"}


def test_funnel_total_row_matches_the_extract(report, sim):
    _, raw = sim
    funnel = _table(report, "funnel")
    assert funnel.loc["Total", "referral"] == str(len(raw))
    for flag in STAGE_FLAGS:
        expected = int((raw[flag] == "true").sum())
        assert expected >= THRESHOLD  # so the total is shown (over 200 seeds: >= 188 LAC)
        assert funnel.loc["Total", flag] == str(expected), flag
    # Each LA's shown counts agree with the extract too.
    for la_code, group in raw.groupby("la_code"):
        [label] = [i for i in funnel.index if f"({la_code})" in i]
        assert funnel.loc[label, "referral"] == str(len(group))
        assert funnel.loc[label, "cpp"] == str(int((group["cpp"] == "true").sum()))


def test_decile_rates_are_counts_over_all_children_of_the_las_times_years(report, sim):
    _, raw = sim
    lsoa = load_lsoa_table()
    las = raw["la_code"].unique()
    assert len(las) == 2
    served = lsoa[lsoa["la_code"].isin(las)]
    children = served.groupby("idaci_decile")["children_0_15"].sum() * 2
    decile = raw["lsoa_code"].map(lsoa.set_index("lsoa_code")["idaci_decile"])
    assert decile.notna().all()
    rates = _table(report, "decile_rates")
    rates.index = rates.index.astype(int)
    checked = 0
    for stage in STAGES:
        hit = raw.index if stage == "referral" else raw.index[raw[stage] == "true"]
        counts = decile.loc[hit].value_counts().reindex(range(1, 11), fill_value=0)
        for d in range(1, 11):
            assert rates.loc[d, "children_0_15_x_years"] == str(int(children.get(d, 0)))
            shown = rates.loc[d, stage]
            if shown == "c":
                assert counts[d] > 0  # a zero is never hidden
                continue
            expected = counts[d] / children[d] * 10_000
            assert float(shown) == pytest.approx(round(expected, 1), abs=0.051), (stage, d)
            checked += 1
    # most of the 60 decile x stage cells are published and verified: over 200 seeds 45-57,
    # mean 51.1, SD 2.0, so 40 is 5.5 SDs out (P < 1e-7)
    assert checked >= 40


def test_decile_counts_match_the_extract(report, sim):
    _, raw = sim
    lsoa = load_lsoa_table()
    decile = raw["lsoa_code"].map(lsoa.set_index("lsoa_code")["idaci_decile"])
    counts = _table(report, "decile_counts")
    expected = decile.loc[raw["cpp"] == "true"].value_counts()
    for d in range(1, 11):
        shown = counts.loc[str(d), "cpp"]
        if shown != "c":
            assert int(shown) == expected.get(d, 0)
    assert counts.loc["Total", "lac"] == str(int((raw["lac"] == "true").sum()))


def _all_output_bytes(report):
    files = [p for p in report.rglob("*") if p.is_file()]
    assert len(files) >= 11
    return {p: p.read_bytes() for p in files}


def test_no_episode_level_value_reaches_any_output(report, sim):
    _, raw = sim
    outputs = _all_output_bytes(report)
    # Non-anchored patterns find a value even inside a longer run (e.g. base64 or PNG).
    id_pattern = re.compile(rb"SYN[0-9A-Z]{16}")
    lsoa_pattern = re.compile(rb"E01[0-9]{6}")
    date_pattern = re.compile(rb"[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{2}/[0-9]{2}/[0-9]{4}")
    child_ids, episode_ids = set(raw["child_id"]), set(raw["episode_id"])
    lsoas, dobs = set(raw["lsoa_code"]), set(raw["date_of_birth"]) - {""}
    # The patterns must describe every value, or the scan below could pass vacuously.
    assert all(id_pattern.fullmatch(v.encode()) for v in child_ids | episode_ids)
    assert all(lsoa_pattern.fullmatch(v.encode()) for v in lsoas)
    assert all(date_pattern.fullmatch(v.encode()) for v in dobs)
    assert len(episode_ids) == len(raw) > 1000 and len(dobs) > 500  # 200 seeds: >= 3,586 and 2,775
    for path, data in outputs.items():
        text = data.decode("latin-1")
        tokens = set(re.findall(r"[A-Za-z0-9]+", text))
        found_ids = {m.decode() for m in id_pattern.findall(data)} | tokens
        assert not found_ids & episode_ids, path
        assert not found_ids & child_ids, path
        found_lsoa = {m.decode() for m in lsoa_pattern.findall(data)} | tokens
        assert not found_lsoa & lsoas, path
        found_dates = {m.decode() for m in date_pattern.findall(data)}
        assert not found_dates & dobs, path


def test_manifest_does_not_record_the_extract_folder(sim, tmp_path, monkeypatch):
    """The extract's folder name can identify an LA analyst; neither the inputs nor the
    recorded command line may carry it."""
    extract_path, _ = sim
    secret = tmp_path / "Portsmouth-CSC-analyst-jbloggs"
    secret.mkdir()
    shutil.copy(extract_path, secret / "extract.csv")
    monkeypatch.setattr(sys, "argv", ["workflows", "describe", str(secret / "extract.csv")])
    out = write_describe_report(secret / "extract.csv", tmp_path / "out", SuppressionRule())
    for path, data in _all_output_bytes(out).items():
        assert b"jbloggs" not in data, path
    assert json.loads((out / "manifest.json").read_text())["inputs"]["extract"]["path"] == "extract.csv"


def test_every_published_count_is_marker_zero_or_at_least_threshold(report):
    cells = []
    funnel = _table(report, "funnel")
    cells += funnel[list(STAGES)].to_numpy().ravel().tolist()
    cells += _table(report, "decile_counts")[list(STAGES)].to_numpy().ravel().tolist()
    cells += _table(report, "factors")["episodes"].tolist()
    assert len(cells) > 100
    for v in cells:
        assert v == "c" or int(v) == 0 or int(v) >= THRESHOLD, v
    # the tiny data do have small cells: 3-17 over 200 seeds, mean 9.2 (as a Poisson count,
    # P(none) = 1e-4)
    assert "c" in cells


def test_invalid_extract_raises_and_leaves_existing_output_untouched(sim, tmp_path):
    extract_path, raw = sim
    bad = raw.copy()
    bad.loc[17, "lsoa_code"] = "E0XNOTANLSOA"
    bad_path = tmp_path / "bad.csv"
    bad.to_csv(bad_path, index=False)
    parent = tmp_path / "results"
    out = parent / "describe"
    out.mkdir(parents=True)
    sentinel = out / "sentinel.txt"
    sentinel.write_text("previous run\n")
    before = sorted(p.relative_to(parent) for p in parent.rglob("*"))
    with pytest.raises(UserError) as info:
        write_describe_report(bad_path, out, SuppressionRule())
    assert "lsoa" in str(info.value).lower()
    assert sentinel.read_text() == "previous run\n"
    assert sorted(p.relative_to(parent) for p in parent.rglob("*")) == before
    assert not [p for p in parent.iterdir() if p.name.startswith(".")]
