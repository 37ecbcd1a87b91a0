"""``fit``, ``report`` and ``compare`` on one small run (the resumed run of
test_interruption, shared): what a run folder holds, the convergence gate's marking, a
report rewritten from stored draws alone, and PSIS-LOO with its Pareto-k warning."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from _fit_runs import interrupted_run
from workflows.compare import CompareRun, load_fit, loo_tables
from workflows.config import load_config
from workflows.errors import UserError
from workflows.fit import convergence_summary, fit_run, _summary_markdown
from workflows.report import NOT_FOR_CITATION, write_run_report


@pytest.fixture(scope="module")
def run_dir():
    run = interrupted_run()
    assert run["second"].returncode == 0, run["second"].stderr[-3000:]
    return run["out"]


def test_run_folder_holds_posterior_tables_reports_and_manifest(run_dir):
    import arviz as az

    for name in ("gradient/posterior_population.nc", "summary.csv", "summary.md", "report.md", "report.html",
                 "tables/population_gradient_per_decile.csv", "tables/population_gradient_per_decile.md",
                 "figures/population_gradient.png", "compare/tables/loo_compare.csv", "compare/figures/loo_compare.png"):
        assert (run_dir / name).is_file(), name
    idata = az.from_netcdf(run_dir / "gradient" / "posterior_population.nc")
    assert idata.posterior.sizes["chain"] == 2 and idata.posterior.sizes["draw"] == 100
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["command"] == "fit" and manifest["seed"] == 4
    assert manifest["config"]["gradient"]["draws"] == 100 and manifest["config"]["compare"]["variants"] == [
        "full", "no_lsoa_effects"]
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["data"]["sha256"])
    assert {"pymc", "arviz", "nutpie"} <= set(manifest["packages"]) and manifest["code_version"]
    assert manifest["seconds"] >= 0 and manifest["sections"]["compare"]["seconds"] > 0
    assert set(manifest["sections"]["compare"]["convergence"]) == {"full", "no_lsoa_effects"}


def test_failed_gate_is_marked_everywhere(run_dir):
    summary = pd.read_csv(run_dir / "summary.csv", index_col=[0, 1])
    assert list(summary.index) == [("gradient", "population"), ("compare", "full"), ("compare", "no_lsoa_effects")]
    assert not summary.loc[("gradient", "population"), "passed"]  # 2 x 100 draws: ESS far below 400
    assert {"max_r_hat", "min_ess_bulk", "min_ess_tail", "divergences"} <= set(summary.columns)
    assert "NOT FOR CITATION" in (run_dir / "summary.md").read_text().split("|")[0]
    report = (run_dir / "report.md").read_text()
    assert NOT_FOR_CITATION in report.split("## Headlines")[0]
    table = pd.read_csv(run_dir / "tables" / "population_gradient_per_decile.csv", index_col=0)
    assert (table["status"] == NOT_FOR_CITATION).all()
    assert {"r_hat", "ess_bulk", "ess_tail", "lower", "upper"} <= set(table.columns)


def test_gate_passes_are_not_marked():
    gates = {"gradient": {"population": {"max_r_hat": 1.004, "min_ess_bulk": 900.0, "min_ess_tail": 800.0,
                                         "divergences": 0, "passed": True}}}
    summary = convergence_summary(gates)
    assert summary["passed"].all()
    assert "NOT FOR CITATION" not in _summary_markdown(summary)


def test_report_is_rewritten_from_stored_draws_without_refitting(run_dir):
    posterior = run_dir / "gradient" / "posterior_population.nc"
    before = posterior.stat().st_mtime_ns
    original = (run_dir / "report.md").read_text()
    (run_dir / "report.md").unlink()
    (run_dir / "report.html").unlink()
    write_run_report(run_dir)
    rewritten = (run_dir / "report.md").read_text()
    assert rewritten == original  # same draws, same numbers
    assert posterior.stat().st_mtime_ns == before
    assert re.search(r"were \d+\.\d \(95% CrI \d+\.\d-\d+\.\d+\) times as likely to be referred", rewritten)
    assert "<h1>" in (run_dir / "report.html").read_text()
    with pytest.raises(UserError, match="no run manifest.json written by `fit`"):
        write_run_report(run_dir / "gradient")


def test_compare_ranks_variants_and_warns_on_pareto_k(run_dir):
    table = pd.read_csv(run_dir / "compare" / "tables" / "loo_compare.csv", index_col=0)
    pareto = pd.read_csv(run_dir / "compare" / "tables" / "pareto_k.csv", index_col=0)
    assert set(table.index) == {"full", "no_lsoa_effects"} and table["elpd_diff"].min() == 0
    assert (pareto["cells"] == 162).all()  # 81 LSOAs x 2 years, referrals only
    # The tiny preset has LSOA-to-LSOA variation: the model with LSOA effects predicts better,
    # and its per-LSOA effects make some cells influential (high Pareto k).
    assert table.index[0] == "full"
    assert pareto.loc["full", "k>0.7"] > 0 and pareto.loc["full", "max_k"] > 0.7
    report = (run_dir / "compare" / "report.md").read_text()
    assert "WARNING: Pareto k > 0.7 for full" in report.split("## Comparison")[0]
    assert "WARNING: Pareto k > 0.7" in (run_dir / "report.md").read_text().split("## Headlines")[0]
    # Comparing the stored fits directly gives the same numbers.
    fits = {v: load_fit(run_dir / "compare-fits" / v) for v in ("full", "no_lsoa_effects")}
    again, _ = loo_tables(fits)
    assert again.loc["full", "elpd_loo"] == pytest.approx(table.loc["full", "elpd_loo"], abs=0.01)
    with pytest.raises(UserError, match="no posterior.nc here"):
        load_fit(run_dir / "gradient")


def test_config_errors_name_the_section_and_key(tmp_path):
    with pytest.raises(UserError, match=r"x.toml: \[compare\] variants \['full', 'nope'\]: expected two or more of full"):
        CompareRun.from_config({"variants": ["full", "nope"]}, "x.toml")
    with pytest.raises(UserError, match=r"\[compare\] stages \['referral'\]: not stages of the transition scale"):
        CompareRun.from_config({"scale": "transition", "stages": ["referral"]}, "x.toml")
    path = tmp_path / "nomodel.toml"
    path.write_text('[data]\npreset = "tiny"\nseed = 1\n')
    with pytest.raises(UserError, match=r"nomodel.toml: no model section to fit; add one of \[gradient\]"):
        fit_run(load_config(path), tmp_path / "out")
    path.write_text('[data]\npreset = "tiny"\nseed = 1\n[sensitivity]\nprior_sets = ["default", "flat"]\n')
    with pytest.raises(UserError, match=r"sensitivity.prior_sets = \['default', 'flat'\]: expected prior set names"):
        fit_run(load_config(path), tmp_path / "out2", log=lambda m: None)
