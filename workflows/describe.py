"""``python -m workflows describe EXTRACT``: a first descriptive report with suppression.

Writes ``report.md``, ``report.html`` (self-contained), ``tables/*.csv`` and ``figures/*.png``
and ``manifest.json`` into ``--out`` (default ``results/describe-<extract name>``), all
replaced together only when complete.  Every table and figure is built from the
*suppressed* tables, so nothing below the threshold reaches an output, and no
episode-level value (ids, dates, LSOA codes) is ever written.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models import describe as d
from models.suppression import SuppressionRule, apply_mask, primary_mask, secondary_mask
from models.vocabulary import STAGE_LABELS, STAGE_SHORT, STAGES
from public_data.tables import load_factor_prevalence, load_la_table, load_lsoa_table
from workflows import atomic, paths, provenance
from workflows.errors import UserError
from workflows.extract_io import load_extract
from workflows.report_format import Section, lead, render_html, render_markdown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("extract", type=Path, help="case-level extract (CSV or Parquet)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: results/describe-<extract name>)")
    parser.add_argument("--threshold", type=int, default=10,
                        help="suppress counts below this (default 10)")
    parser.add_argument("--marker", default="c", help="shown in place of a suppressed value (default c)")


def run(args: argparse.Namespace) -> int:
    out = atomic.output_dir(args.out, paths.RESULTS_DIR / f"describe-{_stem(args.extract)}")
    try:
        rule = SuppressionRule(args.threshold, args.marker)
    except ValueError as err:
        raise UserError(str(err)) from None
    written = write_describe_report(args.extract, out, rule)
    print(f"report: {written / 'report.html'}")
    return 0


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".csv.gz", ".csv", ".parquet"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


@dataclass
class PublishedTables:
    """The describe tables as they may be published (strings, suppressed) plus the numeric
    values that survived suppression (NaN where suppressed), for figures and headlines."""

    funnel: pd.DataFrame
    decile_counts: pd.DataFrame
    decile_rates: pd.DataFrame
    rates_numeric: pd.DataFrame
    gradient: pd.DataFrame
    factors: pd.DataFrame
    n_episodes_shown: str
    years: int


def publish_tables(extract, lsoa_table: pd.DataFrame, la_table: pd.DataFrame,
                   national_factors: pd.DataFrame, rule: SuppressionRule) -> PublishedTables:
    """Compute the descriptive tables and suppress them for publication."""
    ep = extract.episodes
    names = dict(zip(la_table["la_code"], la_table["la_name"]))
    funnel = d.stage_funnel(ep, names)
    # The total row is published, so one suppressed LA in a stage column needs a partner.
    f_mask = secondary_mask(funnel.drop(index="Total"), primary_mask(funnel.drop(index="Total"), rule), axis=0)
    f_mask.loc["Total"] = primary_mask(funnel.loc["Total"], rule)
    funnel_pub = apply_mask(funnel, f_mask, rule)
    share = funnel.div(funnel["referral"], axis=0) * 100
    for stage in STAGES[1:]:
        # A share reveals its denominator too: hide it where either count is hidden.
        hidden = (f_mask[stage] | f_mask["referral"]).to_frame(stage)
        funnel_pub[f"{stage} (% of referrals)"] = apply_mask(
            share[[stage]], hidden, rule, decimals=1)[stage]

    counts = d.counts_by_decile(ep, lsoa_table)
    children = d.denominators_by_decile(ep, lsoa_table)
    c_mask = secondary_mask(counts, primary_mask(counts, rule), axis=0)  # totals by stage shown
    counts_pub = apply_mask(counts, c_mask, rule)
    counts_pub.loc["Total"] = apply_mask(counts.sum().to_frame().T, primary_mask(counts.sum().to_frame().T, rule), rule).iloc[0]
    rates = d.rates_by_decile(counts, children)
    rates_numeric = rates.mask(c_mask)
    rates_pub = apply_mask(rates, c_mask, rule, decimals=1)
    rates_pub.insert(0, "children_0_15_x_years", children.reindex(rates.index).astype(str))
    gradient = d.gradient_summary(rates_numeric).round(2)

    fp = d.factor_prevalence(extract.factors, ep["assessment"], national_factors)
    fp_mask = pd.DataFrame(False, index=fp.index, columns=fp.columns)
    small = primary_mask(fp["episodes"], rule)
    fp_mask.loc[small, ["episodes", "share"]] = True
    fp_out = fp.copy()
    fp_out["share"] = fp_out["share"] * 100
    fp_out["national_share"] = fp_out["national_share"] * 100
    factors_pub = apply_mask(fp_out, fp_mask, rule, decimals=1)
    factors_pub = factors_pub.rename(columns={"share": "share_%", "national_share": "national_share_%"})
    n = len(ep)
    return PublishedTables(funnel_pub, counts_pub, rates_pub, rates_numeric, gradient, factors_pub,
                           rule.marker if 0 < n < rule.threshold else f"{n:,}", d.years_covered(ep))


def headlines(tables: PublishedTables) -> list[str]:
    """Plain-language sentences for policy readers (descriptive: no model, no intervals)."""
    lines = []
    for stage in ("cpp", "lac"):
        r = tables.rates_numeric[stage]
        if np.isfinite(r.get(1, np.nan)) and np.isfinite(r.get(10, np.nan)) and r[10] > 0:
            lines.append(
                f"{STAGE_LABELS[stage]}: children in the most deprived tenth of neighbourhoods "
                f"(IDACI decile 1) had {r[1]:.0f} episodes per 10,000 children a year, against "
                f"{r[10]:.0f} in the least deprived tenth: {r[1] / r[10]:.1f} times the rate "
                f"(about x{tables.gradient.loc[stage, 'ratio_per_decile_step']:.2f} per decile step).")
    lines.append("These are descriptive rates, not model estimates: they carry no credible "
                 "intervals and do not separate neighbourhood from local authority deprivation.")
    return lines


def write_describe_report(extract_path: Path, out_dir: Path, rule: SuppressionRule,
                          title: str | None = None) -> Path:
    """Load, validate and describe an extract; write the report folder atomically."""
    started = time.perf_counter()
    lsoa, la = load_lsoa_table(), load_la_table()
    # Pseudonyms are not needed for a description: a throwaway salt keeps the machine's
    # persistent salt out of it.
    extract, report = load_extract(extract_path, lsoa, salt=os.urandom(32))
    n = len(extract.episodes)
    if n < max(rule.threshold, 1):
        raise UserError(f"{extract_path}: {n} referral episode(s): fewer than the suppression threshold "
                        f"({rule.threshold}), so every count of the report would be suppressed; describe needs "
                        f"at least {rule.threshold} episodes")
    tables = publish_tables(extract, lsoa, la, load_factor_prevalence(), rule)

    out_dir = Path(out_dir)
    with atomic.atomic_dir(out_dir) as tmp:
        (tmp / "tables").mkdir()
        (tmp / "figures").mkdir()
        for name in ("funnel", "decile_counts", "decile_rates", "gradient", "factors"):
            getattr(tables, name).to_csv(tmp / "tables" / f"{name}.csv")
        figs = _figures(tables, tmp / "figures")
        sections = _sections(tables, report, rule, figs)
        heading = title or f"Descriptive report: {extract_path.name}"
        (tmp / "report.md").write_text(render_markdown(heading, sections, tmp, lead(sections, "rates_by_decile.png")), encoding="utf-8")
        (tmp / "report.html").write_text(render_html(heading, sections, lead(sections, "rates_by_decile.png")), encoding="utf-8")
        man = provenance.manifest(
            "describe", inputs={"extract": extract_path, "lsoa_table": paths.REFERENCE_DIR / "lsoa.csv"},
            suppression={"threshold": rule.threshold, "marker": rule.marker},
            validation=report.counts(), seconds=round(time.perf_counter() - started, 2))
        provenance.redact_extract(man, extract_path)
        (tmp / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
    return out_dir


def _sections(tables: PublishedTables, report, rule: SuppressionRule, figs: dict[str, Path]) -> list[Section]:
    counts = report.counts()
    return [
        Section("Headlines", headlines(tables)),
        Section("The extract", [
            f"{tables.n_episodes_shown} referral episodes over {tables.years} reporting year(s) "
            f"(years ending March). Validation: {counts.get('errors', 0)} errors, "
            f"{counts.get('warnings', 0)} warnings.",
            f"Counts from 1 to {rule.threshold - 1} are shown as '{rule.marker}', with any rate or share "
            "derived from them; where a total is shown, a second cell is suppressed so the first "
            "cannot be recovered by subtraction.",
        ]),
        Section("Stage funnel by local authority",
                ["Episodes reaching each stage of the child protection pathway."],
                tables=[("Episodes by stage", tables.funnel)], figures=[("Share of referrals reaching each stage", figs["funnel"])]),
        Section("Rates by neighbourhood deprivation", [
            "Episodes per 10,000 children aged 0-15 per year, by IDACI 2019 decile of the child's "
            "neighbourhood (1 = most deprived). Denominator: IoD2019 mid-2015 children aged 0-15 in "
            "all LSOAs of the authorities in the extract, times the years covered."],
            tables=[("Rate per 10,000 children per year", tables.decile_rates),
                    ("Episodes", tables.decile_counts),
                    ("Gradient summary", tables.gradient)],
            figures=[("Rate per 10,000 by IDACI decile (log scale)", figs["deciles"])]),
        Section("Factors recorded at assessment", [
            "Share of assessed episodes with at least one factor that record each factor, beside "
            "the national share (DfE c3 table)."],
            tables=[("Assessment factors", tables.factors)],
            figures=[("Factor prevalence against the national share", figs["factors"])]),
    ]


def _positive(values: pd.DataFrame) -> bool:
    """Whether any value can be drawn on a log scale (suppressed values are NaN)."""
    v = values.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    return bool((np.isfinite(v) & (v > 0)).any())


def _nothing_to_draw(ax) -> None:
    ax.text(0.5, 0.5, "every value is suppressed or zero", ha="center", va="center", transform=ax.transAxes)


def _figures(tables: PublishedTables, folder: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    fig, ax = plt.subplots(figsize=(8, 4))
    funnel = tables.funnel
    cols = [f"{s} (% of referrals)" for s in STAGES[1:]]
    values = funnel[cols].apply(pd.to_numeric, errors="coerce")  # suppressed -> NaN, not drawn
    values.columns = [STAGE_SHORT[s] for s in STAGES[1:]]
    if _positive(values):
        values.T.plot(ax=ax, marker="o")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    else:
        _nothing_to_draw(ax)
    ax.set_ylabel("% of referrals")
    fig.tight_layout()
    out["funnel"] = folder / "funnel.png"
    fig.savefig(out["funnel"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    if _positive(tables.rates_numeric[list(STAGES)]):
        for stage in STAGES:
            r = tables.rates_numeric[stage]
            ax.plot(r.index, r.to_numpy(dtype=float), marker="o", label=STAGE_LABELS[stage])
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    else:
        _nothing_to_draw(ax)
    ax.set_xticks(range(1, 11))
    ax.set_xlabel("IDACI decile (1 = most deprived)")
    ax.set_ylabel("per 10,000 children per year")
    fig.tight_layout()
    out["deciles"] = folder / "rates_by_decile.png"
    fig.savefig(out["deciles"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 8))
    f = tables.factors
    share = pd.to_numeric(f["share_%"], errors="coerce")
    nat = pd.to_numeric(f["national_share_%"], errors="coerce")
    y = np.arange(len(f))
    ax.barh(y + 0.2, share.to_numpy(), height=0.4, label="this extract")
    ax.barh(y - 0.2, nat.to_numpy(), height=0.4, label="England (DfE c3)")
    ax.set_yticks(y, f["label"], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("% of assessed episodes with any factor")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out["factors"] = folder / "factors.png"
    fig.savefig(out["factors"], dpi=110)
    plt.close(fig)
    return out
