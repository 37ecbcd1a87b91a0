"""Small-number suppression: primary (1..9), secondary (totals), and derived figures."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from _seeds import seed
from models.suppression import (SuppressionRule, apply_mask, primary_mask, secondary_mask,
                                suppress_counts)
from models.vocabulary import FACTOR_NAMES, STAGES
from public_data.tables import load_factor_prevalence, load_la_table, load_lsoa_table
from workflows.describe import publish_tables
from workflows.extract_io import load_extract
from workflows.simulate import write_simulation

PORTSMOUTH, WOKINGHAM = "E06000044", "E06000041"
STAGE_FLAGS = ["assessment", "s47", "icpc", "cpp", "lac"]


# --------------------------------------------------------------------------------------
# Primary suppression
# --------------------------------------------------------------------------------------


def test_primary_suppression_hides_1_to_9_and_shows_0_and_10_up():
    counts = pd.DataFrame({"a": list(range(0, 13))})
    out = suppress_counts(counts, SuppressionRule())
    assert out["a"].tolist() == ["0"] + ["c"] * 9 + ["10", "11", "12"]


def test_primary_mask_on_a_series():
    mask = primary_mask(pd.Series([0, 1, 9, 10, 250]), SuppressionRule())
    assert mask.tolist() == [False, True, True, False, False]


def test_threshold_and_marker_are_configurable():
    counts = pd.DataFrame({"a": [0, 1, 4, 5, 6, 30]})
    out = suppress_counts(counts, SuppressionRule(threshold=5, marker="[x]"))
    assert out["a"].tolist() == ["0", "[x]", "[x]", "5", "6", "30"]
    # A higher threshold hides more.
    out = suppress_counts(counts, SuppressionRule(threshold=31, marker="*"))
    assert out["a"].tolist() == ["0", "*", "*", "*", "*", "*"]


@pytest.mark.parametrize("kwargs", [{"threshold": -1}, {"marker": ""}])
def test_invalid_rule_raises_value_error(kwargs):
    with pytest.raises(ValueError):
        SuppressionRule(**kwargs)


def test_apply_mask_formats_rates_to_given_decimals_and_masks_them():
    rates = pd.DataFrame({"r": [12.345, 0.0, 7.0]})
    mask = pd.DataFrame({"r": [False, False, True]})
    out = apply_mask(rates, mask, SuppressionRule(), decimals=1)
    assert out["r"].tolist() == ["12.3", "0.0", "c"]


# --------------------------------------------------------------------------------------
# Secondary suppression
# --------------------------------------------------------------------------------------


def test_one_suppressed_cell_in_a_column_gets_the_smallest_other_positive_partner():
    counts = pd.DataFrame({"x": [5, 0, 40, 25, 100], "y": [50, 60, 70, 80, 90]},
                          index=list("ABCDE"))
    mask = secondary_mask(counts, primary_mask(counts, SuppressionRule()), axis=0)
    # Column x: A (5) is primary; the zero in B is no help (0 is shown anyway), so the
    # smallest other positive cell, D (25), is suppressed with it.
    assert mask["x"].tolist() == [True, False, False, True, False]
    # Column y had nothing suppressed and gets nothing.
    assert not mask["y"].any()


def test_secondary_suppression_prevents_recovery_by_subtraction():
    counts = pd.DataFrame({"x": [3, 12, 40, 200]}, index=list("ABCD"))
    out = suppress_counts(counts, SuppressionRule(), totals_axis=0)
    total = int(counts["x"].sum())
    shown = pd.to_numeric(out["x"], errors="coerce")
    assert shown.isna().sum() == 2  # never exactly one hidden cell under a shown total
    # What subtraction gives is the sum of the hidden cells, not any single one of them.
    assert total - shown.sum() == 3 + 12
    assert out["x"].tolist() == ["c", "c", "40", "200"]


def test_two_primary_cells_need_no_partner():
    counts = pd.DataFrame({"x": [3, 4, 40, 200]}, index=list("ABCD"))
    mask = secondary_mask(counts, primary_mask(counts, SuppressionRule()), axis=0)
    assert mask["x"].tolist() == [True, True, False, False]


def test_secondary_suppression_along_rows():
    counts = pd.DataFrame({"a": [2, 50], "b": [30, 60], "c": [20, 70]}, index=["r1", "r2"])
    mask = secondary_mask(counts, primary_mask(counts, SuppressionRule()), axis=1)
    assert mask.loc["r1"].tolist() == [True, False, True]  # 20 < 30
    assert not mask.loc["r2"].any()


# --------------------------------------------------------------------------------------
# publish_tables on a crafted extract
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference():
    return load_lsoa_table(), load_la_table(), load_factor_prevalence()


def _crafted_extract(lsoa, groups):
    """Extract-like object: ``groups`` is a list of (la_code, lsoa_index, n, {flag: k})
    meaning n episodes in that LA's lsoa_index-th LSOA of which the first k have flag."""
    rows = []
    for la_code, lsoa_index, n, flags in groups:
        code = lsoa.loc[lsoa["la_code"] == la_code, "lsoa_code"].iloc[lsoa_index]
        for i in range(n):
            row = {"la_code": la_code, "lsoa_code": code, "year_ending_march": 2020}
            row.update({s: i < flags.get(s, 0) for s in STAGE_FLAGS})
            rows.append(row)
    episodes = pd.DataFrame(rows)
    factors = pd.DataFrame(False, index=episodes.index, columns=list(FACTOR_NAMES))
    return SimpleNamespace(episodes=episodes, factors=factors)


def _funnel_row(funnel, la_code):
    [label] = [i for i in funnel.index if la_code in i]
    return funnel.loc[label]


def test_funnel_small_la_is_suppressed_with_a_partner_and_total_shown(reference):
    lsoa, la, national = reference
    extract = _crafted_extract(lsoa, [(PORTSMOUTH, 0, 5, {"assessment": 5}),
                                      (WOKINGHAM, 0, 100, {"assessment": 80, "s47": 30})])
    t = publish_tables(extract, lsoa, la, national, SuppressionRule())
    ports, wok = _funnel_row(t.funnel, PORTSMOUTH), _funnel_row(t.funnel, WOKINGHAM)
    assert ports["referral"] == "c" and wok["referral"] == "c"
    assert ports["assessment"] == "c" and wok["assessment"] == "c"
    assert t.funnel.loc["Total", "referral"] == "105"
    assert t.funnel.loc["Total", "assessment"] == "85"
    # s47: Portsmouth has 0 (shown), Wokingham 30 (shown).
    assert ports["s47"] == "0" and wok["s47"] == "30"


def test_share_is_suppressed_when_its_denominator_is_suppressed(reference):
    """Wokingham's referrals (100) are hidden only to protect Portsmouth's 5.  Showing
    'assessment 80' beside '80.0 % of referrals' would give back 100, and 105 - 100 = 5."""
    lsoa, la, national = reference
    extract = _crafted_extract(lsoa, [(PORTSMOUTH, 0, 5, {}),
                                      (WOKINGHAM, 0, 100, {"assessment": 80})])
    t = publish_tables(extract, lsoa, la, national, SuppressionRule())
    wok = _funnel_row(t.funnel, WOKINGHAM)
    assert wok["referral"] == "c"
    assert wok["assessment"] == "80"
    for stage in STAGES[1:]:
        assert wok[f"{stage} (% of referrals)"] == "c", stage
        assert _funnel_row(t.funnel, PORTSMOUTH)[f"{stage} (% of referrals)"] == "c", stage
    assert t.funnel.loc["Total", "assessment (% of referrals)"] == f"{80 / 105 * 100:.1f}"


def test_share_is_suppressed_with_its_suppressed_count(reference):
    lsoa, la, national = reference
    extract = _crafted_extract(lsoa, [(PORTSMOUTH, 0, 50, {"assessment": 40, "cpp": 3}),
                                      (WOKINGHAM, 0, 60, {"assessment": 45, "cpp": 20})])
    t = publish_tables(extract, lsoa, la, national, SuppressionRule())
    ports, wok = _funnel_row(t.funnel, PORTSMOUTH), _funnel_row(t.funnel, WOKINGHAM)
    assert ports["cpp"] == "c" and wok["cpp"] == "c"  # primary + its partner
    assert ports["cpp (% of referrals)"] == "c" and wok["cpp (% of referrals)"] == "c"
    assert ports["assessment (% of referrals)"] == "80.0"
    assert wok["assessment (% of referrals)"] == "75.0"


def test_rates_from_suppressed_decile_counts_are_suppressed(reference):
    lsoa, la, national = reference
    # Three LSOAs of Portsmouth in (usually) different deciles: small, medium, large.
    ports = lsoa[lsoa["la_code"] == PORTSMOUTH].reset_index(drop=True)
    first = ports.drop_duplicates("idaci_decile").index[:3].tolist()
    assert len(first) == 3
    extract = _crafted_extract(lsoa, [(PORTSMOUTH, first[0], 4, {}),
                                      (PORTSMOUTH, first[1], 30, {}),
                                      (PORTSMOUTH, first[2], 80, {})])
    t = publish_tables(extract, lsoa, la, national, SuppressionRule())
    d = ports.loc[first, "idaci_decile"].tolist()
    counts, rates = t.decile_counts["referral"], t.decile_rates["referral"]
    assert counts[d[0]] == "c" and counts[d[1]] == "c" and counts[d[2]] == "80"
    assert rates[d[0]] == "c" and rates[d[1]] == "c"
    assert np.isnan(t.rates_numeric.loc[d[0], "referral"])
    assert np.isnan(t.rates_numeric.loc[d[1], "referral"])
    assert rates[d[2]] != "c" and float(rates[d[2]]) > 0
    assert counts["Total"] == "114"


# --------------------------------------------------------------------------------------
# publish_tables on the tiny simulation
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_tables(tmp_path_factory, reference):
    lsoa, la, national = reference
    out = tmp_path_factory.mktemp("supp") / "sim"
    write_simulation(out, "tiny", seed=seed(3))
    extract, _ = load_extract(out / "extract.csv", lsoa, salt=b"0" * 32)
    return extract, publish_tables(extract, lsoa, la, national, SuppressionRule(threshold=40))


def test_tiny_simulation_tables_never_show_a_small_count(tiny_tables):
    _, t = tiny_tables
    count_cells = pd.concat([t.funnel[list(STAGES)].stack(), t.decile_counts.stack(),
                             t.factors["episodes"]])
    hidden = 0
    for v in count_cells:
        assert v == "c" or int(v) == 0 or int(v) >= 40, v
        hidden += v == "c"
    assert hidden > 0  # the threshold of 40 bites on the tiny data: 21-44 hidden over 200 seeds


def test_tiny_simulation_every_rate_of_a_hidden_count_is_hidden(tiny_tables):
    _, t = tiny_tables
    counts = t.decile_counts.drop(index="Total")
    rates = t.decile_rates[list(STAGES)]
    assert ((counts == "c") == (rates == "c")).all().all()
    assert (counts == "c").any().any()
    assert t.rates_numeric[counts == "c"].isna().all().all()
    # Factor shares go with their counts.
    assert ((t.factors["episodes"] == "c") == (t.factors["share_%"] == "c")).all()


def test_tiny_simulation_no_column_has_exactly_one_hidden_cell_under_a_shown_total(tiny_tables):
    _, t = tiny_tables
    for table in (t.funnel[list(STAGES)], t.decile_counts):
        body = table.drop(index="Total")
        for stage in STAGES:
            if table.loc["Total", stage] != "c":
                assert (body[stage] == "c").sum() != 1, stage
