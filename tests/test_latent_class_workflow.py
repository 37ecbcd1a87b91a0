"""``workflows latent-class``: the report end to end on the tiny preset with short chains, its
honesty about convergence, suppression, confidentiality and caching."""

from __future__ import annotations

import json

import arviz as az
import numpy as np
import pandas as pd
import pytest

from models.suppression import SuppressionRule
from workflows import cli
from workflows.errors import UserError
from workflows.extract_io import load_extract
from workflows.latent_class import (NOT_FOR_CITATION, LatentClassRun, _tables, analyse, assessed_factors,
                                    write_latent_class_report)
from workflows.reference import load_lsoa_table
from workflows.simulate import write_simulation

SHORT = LatentClassRun(k_max=2, draws=100, tune=150, chains=2, seed=3, n_starts=3, episodes=1000)


@pytest.fixture(scope="module")
def tiny_extract(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-latent-class")
    write_simulation(out, "tiny", seed=4)
    return out / "extract.csv"


@pytest.fixture(scope="module")
def analysis(tiny_extract):
    extract, _ = load_extract(tiny_extract, load_lsoa_table(), salt=b"tests")
    factors = assessed_factors(extract.episodes, extract.factors)
    assert len(factors) == int(extract.episodes["assessment"].sum())
    return analyse(factors, SHORT, log=lambda m: None)


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


def test_short_chains_are_marked_not_for_citation(report, analysis):
    out, _ = report
    assert not analysis.fit.gate["passed"]          # 2 x 100 draws cannot give ESS 400
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
    extract = pd.read_csv(tiny_extract, dtype=str)
    secrets = set(extract["child_id"]) | set(extract["episode_id"]) | set(extract["lsoa_code"]) \
        | set(extract["referral_date"])
    for path in out.rglob("*"):
        if path.suffix in {".md", ".html", ".csv", ".json"}:
            text = path.read_text()
            leaked = [s for s in list(secrets)[:5000] if s in text]
            assert not leaked, (path.name, leaked[:3])
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
    path.write_text('[data]\npreset = "tiny"\nseed = 1\n[latent_class]\nk_max = 3\ndraws = 200\nmin_share = 0.02\n')
    run = LatentClassRun.from_config(load_config(path)["latent_class"], str(path))
    assert (run.k_max, run.draws, run.min_share, run.k_values) == (3, 200, 0.02, [1, 2, 3])
    path.write_text('[data]\npreset = "tiny"\nseed = 1\n[latent_class]\nk_max = "three"\n')
    with pytest.raises(UserError, match=r"latent_class.k_max = 'three': expected int"):
        load_config(path)
