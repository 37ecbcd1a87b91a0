"""``workflows latent-class``: the report end to end on the tiny preset with short chains, its
honesty about convergence, suppression, confidentiality and caching; with the latent class
regression (covariates, LA, distal outcomes) and the neglect misalignment analysis.

The regression's recovery of known covariate effects, standardised prevalences and distal
probabilities is tested on simulated truth in tests/test_latent_class_regression.py, the
misalignment model's in tests/test_latent_class_misalignment.py; here the report's numbers
are checked against the tiny preset's truth and identities that hold whatever the fit."""

from __future__ import annotations

import json

import arviz as az
import numpy as np
import pandas as pd
import pytest

from _seeds import seed
from _confidential import assert_no_episode_values

from models.suppression import SuppressionRule
from public_data.tables import load_lsoa_table
from workflows import cli
from workflows.errors import UserError
from workflows.extract_io import load_extract
from workflows.latent_class import (MISALIGNMENT_NOT_FOR_CITATION, NOT_FOR_CITATION,
                                    REGRESSION_NOT_FOR_CITATION, LatentClassRun, _tables, analyse,
                                    analyse_extract, assessed_factors, write_latent_class_report)
from workflows.simulate import write_simulation

SHORT = LatentClassRun(k_max=2, draws=100, tune=150, chains=2, seed=seed(3), n_starts=3, episodes=1000,
                       regression=True, covariates=("age_group", "gender"))


@pytest.fixture(scope="module")
def tiny_extract(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-latent-class")
    write_simulation(out, "tiny", seed=seed(4))
    return out / "extract.csv"


@pytest.fixture(scope="module")
def extract(tiny_extract):
    return load_extract(tiny_extract, load_lsoa_table(), salt=b"tests")[0]


@pytest.fixture(scope="module")
def analysis(extract):
    factors = assessed_factors(extract.episodes, extract.factors)
    assert len(factors) == int(extract.episodes["assessment"].sum())
    return analyse_extract(extract.episodes, extract.factors, SHORT, log=lambda m: None)


@pytest.fixture(scope="module")
def report(tiny_extract, analysis, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "latent-class"
    messages = []
    write_latent_class_report(tiny_extract, out, SHORT, SuppressionRule(10), log=messages.append,
                              analysis=analysis)
    return out, messages


def test_report_tables_figures_and_posterior(report, analysis):
    out, _ = report
    for name in ("report.md", "report.html", "manifest.json", "posterior.nc", "tables/k_selection.csv",
                 "tables/profiles.csv", "tables/class_sizes.csv"):
        assert (out / name).exists(), name
    for name in ("k_selection", "profiles", "class_sizes"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
    k_table = pd.read_csv(out / "tables" / "k_selection.csv", index_col=0)
    assert list(k_table.index) == [1, 2]
    assert {"elpd_loo", "se", "bic", "entropy", "pareto_k_gt_0.7", "empty_or_tiny_class"} <= set(k_table.columns)
    assert k_table.loc[2, "elpd_loo"] > k_table.loc[1, "elpd_loo"]   # the tiny preset has classes
    profiles = pd.read_csv(out / "tables" / "profiles.csv")
    assert set(profiles["class"]) == set(analysis.names)
    assert ((profiles["lower"] <= profiles["mean"]) & (profiles["mean"] <= profiles["upper"])).all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["chosen_k"] == analysis.k and manifest["config"]["k_max"] == 2
    assert "/" not in manifest["inputs"]["extract"]["path"]
    md = (out / "report.md").read_text()
    assert "## Choosing K" in md and "PSIS-LOO" in md and analysis.names[0] in md
    # nutpie's unconstrained copies (class_weight_simplex__, ...) would escape label alignment
    for fitted in (analysis.fit, analysis.regression):
        post = fitted.idata.posterior
        assert not [v for v in post.data_vars if str(v).endswith("__")], list(post.data_vars)
        used = {d for var in post.data_vars.values() for d in var.dims}
        assert set(post.dims) <= used, set(post.dims) - used          # nor their dims
        assert {"item_prob", "class_weight"} <= set(post.data_vars)


def test_short_chains_are_marked_not_for_citation(report, analysis):
    out, _ = report
    assert not analysis.fit.gate["passed"]          # 2 x 100 draws cannot give ESS 400 (P(pass) ~ 0)
    assert NOT_FOR_CITATION in (out / "report.md").read_text().split("## Headlines")[0]
    sizes = pd.read_csv(out / "tables" / "class_sizes.csv")
    assert (sizes["status"] == NOT_FOR_CITATION).all()


def test_episode_memberships_in_memory_only(report, analysis, tiny_extract):
    member = analysis.episode_membership()
    assert member.dims == ("episode", "class") and member.sizes["episode"] == 1000
    np.testing.assert_allclose(member.sum("class"), 1.0, atol=1e-9)
    modal = analysis.modal_class()
    assert (modal.to_numpy() == np.asarray(analysis.names)[member.to_numpy().argmax(axis=1)]).all()
    # modal counts in the class-size table agree with the in-memory memberships
    assert analysis.class_sizes()["modal_episodes"].to_dict() == modal.value_counts().reindex(
        analysis.names, fill_value=0).to_dict()
    out, _ = report
    assert_no_episode_values(out, tiny_extract)
    idata = az.from_netcdf(out / "posterior.nc")
    assert set(idata.groups()) == {"posterior", "sample_stats"}        # no pattern counts or matrix
    assert set(idata.posterior.data_vars) == {"class_weight", "item_prob"}
    assert list(idata.posterior["class"].to_numpy()) == analysis.names


def test_small_class_counts_are_suppressed(analysis):
    sizes = analysis.class_sizes()
    smallest = int(sizes["modal_episodes"].min())
    tables = _tables(analysis, SuppressionRule(smallest + 1))
    shown = tables["class_sizes"]
    assert shown.loc[sizes["modal_episodes"].idxmin(), "modal_episodes"] == "c"
    # the total is published (all assessed episodes), so a second cell hides the first
    assert (shown["modal_episodes"] == "c").sum() >= 2
    assert (_tables(analysis, SuppressionRule(1))["class_sizes"]["modal_episodes"] != "c").all()


def test_an_unchanged_run_is_not_refitted(report, tiny_extract):
    out, _ = report
    before = (out / "report.html").stat().st_mtime_ns
    messages = []
    write_latent_class_report(tiny_extract, out, SHORT, SuppressionRule(10), log=messages.append)
    assert any("unchanged" in m for m in messages)
    assert (out / "report.html").stat().st_mtime_ns == before


def test_verb_is_registered_and_bad_requests_are_clear(tiny_extract, tmp_path, capsys):
    args = cli.build_parser().parse_args(["latent-class", str(tiny_extract), "--k-max", "3", "--k", "2"])
    assert args.k_max == 3 and args.k == 2 and args._module == "workflows.latent_class"
    assert cli.main(["latent-class", str(tiny_extract), "--k-max", "0", "--out", str(tmp_path / "x")]) == 2
    assert "give k" in capsys.readouterr().err
    with pytest.raises(UserError, match=r"demo.toml: \[latent_class\] sampler 'stan'"):
        LatentClassRun.from_config({"sampler": "stan"}, "demo.toml")
    with pytest.raises(UserError, match="k_max 2 is below k_min 3"):
        LatentClassRun.from_config({"k_min": 3, "k_max": 2}, "x.toml")
    few = pd.DataFrame(np.eye(5, dtype=bool)[np.arange(20) % 5], columns=list("abcde"))
    with pytest.raises(UserError, match="20 assessed episodes"):
        analyse(few, SHORT)


def test_config_section_loads_into_a_run(tmp_path):
    from workflows.config import load_config

    path = tmp_path / "lc.toml"
    # seeds in these configs are only parsed (config errors), never drawn from: not shifted
    path.write_text('[data]\npreset = "tiny"\nseed = 1\n[latent_class]\nk_max = 3\ndraws = 200\nmin_share = 0.02\n')
    run = LatentClassRun.from_config(load_config(path)["latent_class"], str(path))
    assert (run.k_max, run.draws, run.min_share, run.k_values) == (3, 200, 0.02, [1, 2, 3])
    path.write_text('[data]\npreset = "tiny"\nseed = 1\n[latent_class]\nk_max = "three"\n')
    with pytest.raises(UserError, match=r"latent_class.k_max = 'three': expected int"):
        load_config(path)
    # the report's longer refit of the chosen K
    path.write_text('[data]\npreset = "tiny"\nseed = 1\n[latent_class]\ndraws = 200\ntune = 300\nfinal_draws = 1500\n'
                    'final_chains = 4\n')
    run = LatentClassRun.from_config(load_config(path)["latent_class"], str(path))
    final = run.final_settings()
    assert (final.draws, final.tune, final.chains, run.settings().draws) == (1500, 750, 4, 200)
    assert LatentClassRun().final_settings() is None  # default: report the selection's own fit
    with pytest.raises(UserError, match=r"final_draws -1"):
        LatentClassRun.from_config({"final_draws": -1}, str(path))


# ---------------------------------------------------------------------------------------
# Latent class regression and neglect misalignment
# ---------------------------------------------------------------------------------------

def test_regression_and_misalignment_sections_and_tables(report, analysis):
    out, _ = report
    md = (out / "report.md").read_text()
    for heading in ("## Who is in which class, and what follows (latent class regression)",
                    "## Neglect misalignment"):
        assert heading in md
    headlines = md.split("## Headlines")[1].split("## ")[0]
    assert "of neglect child protection plans, neglect had not been recorded at the assessment" in headlines
    assert "section 47 enquiry" in headlines and "CrI" in headlines
    prevalence = pd.read_csv(out / "tables" / "class_prevalence.csv", dtype={"episodes": str})
    assert set(prevalence["by"]) == {"age_group", "gender", "la", "all"}
    assert set(prevalence["class"]) == set(analysis.names)           # the latent class fit's names
    assert ((prevalence["lower"] <= prevalence["mean"]) & (prevalence["mean"] <= prevalence["upper"])).all()
    # standardised shares of the classes sum to one at every level
    np.testing.assert_allclose(prevalence.groupby(["by", "level"])["mean"].sum(), 1.0, atol=1e-3)
    distal = pd.read_csv(out / "tables" / "distal_outcomes.csv")
    assert set(distal["quantity"]) == {"P(s47)", "P(cpp given s47)", "P(cpp)", "P(lac)"}
    wide = distal.set_index(["class", "quantity"])["mean"].unstack()
    np.testing.assert_allclose(wide["P(cpp)"], wide["P(s47)"] * wide["P(cpp given s47)"], atol=0.02)
    mis = pd.read_csv(out / "tables" / "neglect_misalignment.csv", index_col="la", dtype=str)
    assert list(mis.index) == sorted(analysis.misalignment.counts.table.index) + ["all"]
    for name, fitted, mark in (("class_prevalence", analysis.regression, REGRESSION_NOT_FOR_CITATION),
                               ("distal_outcomes", analysis.regression, REGRESSION_NOT_FOR_CITATION),
                               ("neglect_misalignment", analysis.misalignment, MISALIGNMENT_NOT_FOR_CITATION)):
        table = pd.read_csv(out / "tables" / f"{name}.csv")
        if fitted.citable:
            assert "status" not in table.columns, name
        else:                                           # each part is gated on its own fit
            assert (table["status"] == mark).all(), name
            assert mark in md
    assert not analysis.regression.citable           # 2 x 100 draws: the gate must say so
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"regression", "misalignment"} <= set(manifest["convergence"])


def test_regression_and_misalignment_counts_are_suppressed(analysis):
    counts = analysis.regression.data.cells.groupby("age_group")["count"].sum()
    smallest = int(counts.min())
    shown = _tables(analysis, SuppressionRule(smallest + 1))["class_prevalence"]
    age = shown.xs("age_group", level="by")["episodes"].groupby(level="level").first()
    assert age[counts.idxmin()] == "c"
    assert (age == "c").sum() >= 2                    # the total is published: a second level hides it
    assert (shown.xs("all", level="by")["episodes"] == str(analysis.regression.data.n_episodes)).all()
    assert not np.isnan(shown["mean"].to_numpy(dtype=float)).any()   # model estimates are kept

    table = analysis.misalignment.counts.table
    small = int(np.minimum(table["not_recorded"], table["plans"] - table["not_recorded"]).min())
    mis = _tables(analysis, SuppressionRule(small + 1))["neglect_misalignment"]
    la = np.minimum(table["not_recorded"], table["plans"] - table["not_recorded"]).idxmin()
    assert mis.loc[la, "not_recorded"] == "c" and mis.loc[la, "observed_share"] == "c"
    las = [i for i in mis.index if i != "all"]
    assert (mis.loc[las, "plans"] == "c").sum() >= min(2, len(las))  # secondary against the 'all' row
    assert mis.loc["all", "plans"] == str(int(table["plans"].sum()))
    shown_all = _tables(analysis, SuppressionRule(1))
    assert not (shown_all["neglect_misalignment"] == "c").any().any()
    assert not (shown_all["class_prevalence"]["episodes"] == "c").any()


def test_regression_and_misalignment_numbers_against_the_truth(analysis, extract, tiny_extract):
    """Misalignment against the simulator's truth; the regression against identities any
    correct, correctly labelled fit satisfies (its recovery: test_latent_class_regression)."""
    # Neglect misalignment: expected share of the plans' true classes missing neglect
    truth = json.loads((tiny_extract.parent / "truth.json").read_text())
    true_class = pd.read_csv(tiny_extract.parent / "truth_episodes.csv", index_col="episode_id")["demand_class"]
    ep = extract.episodes
    plan = (ep["cpp"].fillna(False).to_numpy(dtype=bool) & (ep["cpp_category"].astype(object) == "neglect").to_numpy()
            & ep["assessment"].fillna(False).to_numpy(dtype=bool))
    p_neglect = {c: prof["neglect"] for c, prof in truth["classes"]["profiles"].items()}
    miss = 1 - true_class.loc[ep.loc[plan, "episode_id"]].map(p_neglect).to_numpy()
    summary = analysis.misalignment.summary(0.9)
    assert summary.loc["all", "plans"] == plan.sum()
    assert summary.loc["all", "not_recorded"] == int((~extract.factors["neglect"].to_numpy()[plan]).sum())
    assert summary.loc["all", "lower"] <= miss.mean() <= summary.loc["all", "upper"]
    true_la = pd.Series(miss).groupby(ep.loc[plan, "la_code"].to_numpy()).mean()
    las = summary.drop(index="all")
    assert ((las["lower"] <= true_la) & (true_la <= las["upper"])).sum() >= len(las) - 1

    # Regression: the classes are the latent class fit's (aligned to its profiles) ...
    reg = analysis.regression_summary()
    lca = analysis.class_sizes()["share"]
    np.testing.assert_allclose(reg["class_weight_mean"].sel({"class": lca.index}).to_numpy(), lca, atol=0.05)
    # ... and the class-specific outcome probabilities reproduce the observed outcome rates
    fitted = ep.set_index("episode_id").loc[analysis.episode_ids]
    post = analysis.regression.idata.posterior
    implied = (post["class_weight"] * post["distal_prob"]).sum("class")   # draws of P(outcome)
    for o in ("s47", "cpp", "lac"):
        observed = fitted[o].fillna(False).astype(bool).mean()
        draws = implied.sel(outcome=o).to_numpy().ravel()
        lo, hi = np.quantile(draws, [0.005, 0.995])
        assert lo <= observed <= hi and abs(draws.mean() - observed) < 0.02, (o, observed, lo, hi)


def test_regression_keys_load_from_a_config(tmp_path):
    from workflows.config import load_config

    path = tmp_path / "lc.toml"
    # seeds in these configs are only parsed (config errors), never drawn from: not shifted
    path.write_text('[data]\npreset = "tiny"\nseed = 1\n[latent_class]\nk = 3\nk_max = 0\nregression = true\n'
                    'covariates = ["age_group"]\ndistal = false\nmisalignment = false\n')
    run = LatentClassRun.from_config(load_config(path)["latent_class"], str(path))
    assert (run.regression, run.covariates, run.distal, run.misalignment) == (True, ("age_group",), False, False)
    defaults = LatentClassRun()
    assert (defaults.regression, defaults.distal, defaults.misalignment) == (False, True, True)
    with pytest.raises(UserError, match=r"x.toml: \[latent_class\] covariates \['age', 'gender'\]"):
        LatentClassRun.from_config({"covariates": ["age", "gender"]}, "x.toml")
    args = cli.build_parser().parse_args(["latent-class", "x.csv", "--regression", "--covariates", "age_group",
                                          "--no-misalignment"])
    assert (args.regression, args.covariates, args.no_distal, args.no_misalignment) == (
        True, ["age_group"], False, True)
    path.write_text('[data]\npreset = "tiny"\nseed = 1\n[latent_class]\nregression = "yes"\n')
    with pytest.raises(UserError, match=r"latent_class.regression = 'yes': expected bool"):
        load_config(path)


def test_a_regression_that_cannot_run_is_reported_not_fatal(analysis, extract):
    from dataclasses import replace

    from workflows.latent_class import _sections, add_analyses

    one = replace(analysis, names=analysis.names[:1], regression=None)      # as if K = 1 were chosen
    assert not one.complete
    done = add_analyses(one, extract.episodes, extract.factors, log=lambda m: None)
    assert done.complete and done.regression is None
    assert "K >= 2" in done.skipped["regression"]
    assert done.misalignment is analysis.misalignment                          # not refitted
    status = _sections(replace(analysis, regression=None, skipped=done.skipped), _tables(
        replace(analysis, regression=None), SuppressionRule(10)), {"k": ("", None), "profiles": ("", None),
                                                                    "sizes": ("", None)}, SuppressionRule(10))[0]
    assert any("regression analysis was asked for but not run" in p for p in status.paragraphs)
