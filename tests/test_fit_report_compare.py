"""``fit``, ``report`` and ``compare`` on one small run, started, killed mid-way (SIGKILL: no
chance to clean up), resumed and rerun unchanged (``_fit_runs.interrupted_run``; in one module so
that ``--dist loadscope`` pays for it once): the kill leaves no half-written result, the rerun
sweeps what it left, reuses the finished section and completes, an unchanged rerun refits
nothing; what a run folder holds, the convergence gate's marking, a report rewritten from stored
draws alone, and PSIS-LOO with its Pareto-k warning.  Then ``fit`` on an LA's own extract
(``[data] extract``) with a ``[latent_class]`` section: its convergence in the run summary, the
extract never copied nor its folder recorded, cache keys on its sha256, and the config errors of
the new keys."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from _seeds import seed
from _fit_runs import interrupted_run
from models.suppression import SuppressionRule
from workflows import provenance
from workflows.compare import CompareRun, load_fit, loo_tables
from workflows.config import load_config
from workflows.errors import UserError
from workflows.fit import fit_run, section_key, _summary_markdown
from workflows.report import NOT_FOR_CITATION, convergence_summary, write_run_report
from workflows.run_data import extract_path


def test_a_killed_run_leaves_only_finished_outputs():
    run = interrupted_run()
    killed = run["killed"]
    assert killed["returncode"] == -9, killed["output"][-2000:]
    files = killed["files"]
    # The finished section is whole, the interrupted one is absent (not half there).
    for name in ("gradient/report.html", "gradient/report.md", "gradient/manifest.json",
                 "gradient/posterior_population.nc", "data/extract.csv", "data/manifest.json"):
        assert name in files, name
    assert not any(f == "compare" or f.startswith("compare/") for f in files), files
    assert not any(f.startswith("summary") or f.startswith("report") for f in files), files
    # The run manifest written after the first section records it, and only it.
    manifest = json.loads(killed["manifest"])
    assert set(manifest["sections"]) == {"gradient"}
    assert not manifest["sections"]["gradient"]["reused"]


def test_the_rerun_resumes_and_completes():
    run = interrupted_run()
    second, out = run["second"], run["out"]
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "removed 1 unfinished temporary output(s)" in second.stdout
    assert not (out / ".compare.abc123.tmp").exists()
    assert "reusing the tiny extract" in second.stdout and "simulating" not in second.stdout
    assert "[1/2] gradient: unchanged" in second.stdout
    assert "[2/2] compare ..." in second.stdout
    # The finished section was not rewritten: the same files, byte for byte in time.
    for path, stamp in run["stamps_after_kill"].items():
        assert (out / path).stat().st_mtime_ns == stamp, path
    manifest = json.loads(run["manifest_second"])
    assert manifest["sections"]["gradient"]["reused"] and not manifest["sections"]["compare"]["reused"]
    for name in ("report.html", "report.md", "summary.csv", "summary.md", "compare/report.html"):
        assert (out / name).is_file(), name
    assert not [p for p in out.rglob(".*") if p.name.endswith((".tmp", ".old"))]


def test_an_unchanged_rerun_does_not_refit():
    run = interrupted_run()
    third, out = run["third"], run["out"]
    assert third.returncode == 0, third.stderr[-3000:]
    assert "[1/2] gradient: unchanged" in third.stdout and "[2/2] compare: unchanged" in third.stdout
    assert "fitting" not in third.stdout
    for path, stamp in run["stamps_second"].items():
        assert (out / path).stat().st_mtime_ns == stamp, path
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(s["reused"] for s in manifest["sections"].values())


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
    assert manifest["command"] == "fit" and manifest["seed"] == seed(4)
    assert manifest["config"]["gradient"]["draws"] == 100 and manifest["config"]["compare"]["variants"] == [
        "full", "no_lsoa_effects"]
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["data"]["sha256"])
    assert {"pymc", "arviz", "nutpie"} <= set(manifest["packages"]) and manifest["code_version"]
    assert manifest["seconds"] >= 0 and manifest["sections"]["compare"]["seconds"] > 0
    assert set(manifest["sections"]["compare"]["convergence"]) == {"full", "no_lsoa_effects"}


def test_failed_gate_is_marked_everywhere(run_dir):
    summary = pd.read_csv(run_dir / "summary.csv", index_col=[0, 1])
    assert list(summary.index) == [("gradient", "population"), ("compare", "full"), ("compare", "no_lsoa_effects")]
    # 2 x 100 draws: ESS far below 400 and R-hat above 1.01 somewhere, P(passes) ~ 0
    assert not summary.loc[("gradient", "population"), "passed"]
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
    # and its per-LSOA effects make some cells influential (high Pareto k): each of 81 LSOA
    # effects rests on two cells, so leaving one out moves it far.  Measured, not derived:
    # elpd difference and Pareto k over seed offsets 0-3 in tests/README.md.
    print(f"compare:\n{table.round(2).to_string()}\n{pareto.round(2).to_string()}")
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
    # seeds in these configs are only parsed (config errors), never drawn from: not shifted
    path.write_text('[data]\npreset = "tiny"\nseed = 1\n')
    with pytest.raises(UserError, match=r"nomodel.toml: no model section to fit; add one of \[gradient\]"):
        fit_run(load_config(path), tmp_path / "out")
    path.write_text('[data]\npreset = "tiny"\nseed = 1\n[sensitivity]\nprior_sets = ["default", "flat"]\n')
    with pytest.raises(UserError, match=r"sensitivity.prior_sets = \['default', 'flat'\]: expected prior set names"):
        fit_run(load_config(path), tmp_path / "out2", log=lambda m: None)


# --- an LA's own extract, and the latent class section, through `fit` ----------------------------

OWN_CONFIG = f"""
[data]
extract = "extract.csv"   # beside this config, where the analyst keeps it

[latent_class]
k = 2
k_max = 0
chains = 2
draws = 100
tune = 150
seed = {seed(3)}
n_starts = 3
episodes = 600
misalignment = false
"""


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    """The tiny preset's extract as if it were an LA's own, in a folder whose name must never
    reach the run folder; ``fit`` run as from the command line (argv names the config)."""
    from workflows.simulate import write_simulation

    root = tmp_path_factory.mktemp("own-extract")
    secret = root / "la-secret-folder"
    write_simulation(secret, "tiny", seed=seed(4))
    config_path = secret / "own.toml"
    config_path.write_text(OWN_CONFIG)
    out = tmp_path_factory.mktemp("results") / "own"
    messages = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.argv", ["workflows", "fit", "--config", str(config_path), "--out", str(out)])
        fit_run(load_config(config_path), out, n_workers=1, progress=False, log=messages.append)
    return {"root": root, "secret": secret, "config": config_path, "out": out, "messages": messages}


def test_latent_class_section_convergence_reaches_the_run_summary_and_report(own_run):
    out = own_run["out"]
    for name in ("latent_class/report.html", "latent_class/posterior.nc", "latent_class/tables/class_sizes.csv",
                 "summary.csv", "report.md", "report.html"):
        assert (out / name).is_file(), name
    gate = json.loads((out / "latent_class" / "manifest.json").read_text())["convergence"]["2"]
    summary = pd.read_csv(out / "summary.csv", index_col=[0, 1])
    assert list(summary.index) == [("latent_class", "K=2")]
    row = summary.loc[("latent_class", "K=2")]
    assert row["max_r_hat"] == pytest.approx(gate["max_r_hat"]) and row["divergences"] == gate["divergences"]
    assert row["min_ess_bulk"] == pytest.approx(gate["min_ess_bulk"])
    assert bool(row["passed"]) == (gate["passed"] and not gate["multimodal"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sections"]["latent_class"]["convergence"]["2"] == gate
    # The two classes found in the tiny preset's factors: shares that sum to one, and neither
    # empty by the workbench's own rule (share >= 1%).  Measured, not derived: the smaller
    # held 16.4%, 14.3% and 8.6% of the 600 episodes at seed offsets 0, 1 and 2 (a K = 2 cut
    # of seven simulated classes: where it falls varies with the data).
    sizes = pd.read_csv(out / "latent_class" / "tables" / "class_sizes.csv", index_col=0)
    print(f"own extract K = 2 class shares {sizes['share'].round(3).tolist()}")
    assert len(sizes) == 2 and sizes["share"].sum() == pytest.approx(1, abs=0.01) and sizes["share"].min() >= 0.01
    report = (out / "report.md").read_text()
    assert "## Demand classes" in report and "K = 2 classes" in report and "latent_class/report.html" in report
    assert "the LA's own extract extract.csv" in report
    if not row["passed"]:
        assert "NOT FOR CITATION" in report.split("## Demand classes")[0] and "latent_class: K=2" in report


def test_own_extract_is_validated_in_place_never_copied_nor_its_folder_recorded(own_run):
    out, secret = own_run["out"], own_run["secret"]
    extract = secret / "extract.csv"
    sha = provenance.sha256_file(extract)
    assert any("using your extract extract.csv (validated" in m for m in own_run["messages"])
    assert not (out / "data").exists()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and not any(provenance.sha256_file(p) == sha for p in files)  # no copy, whatever its name
    for path in files:
        if path.suffix in (".json", ".md", ".html", ".csv", ".txt"):
            text = path.read_text(errors="replace")
            assert secret.name not in text and str(own_run["root"]) not in text, path  # nor the config's folder
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"] == {"extract": "extract.csv", "sha256": sha}
    assert manifest["config"]["data"] == {"extract": "extract.csv"} and manifest["seed"] is None
    assert "own.toml" in manifest["argv"]
    section = json.loads((out / "latent_class" / "manifest.json").read_text())
    assert section["inputs"]["extract"] == {"path": "extract.csv", "sha256": sha}


def test_own_extract_cache_key_is_its_sha256_not_its_path(own_run, tmp_path):
    """Moved elsewhere (same bytes, another folder, given as ~-free absolute path): reused; the
    key is the one the extract's sha256 gives."""
    out = own_run["out"]
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / "renamed.csv").write_bytes((own_run["secret"] / "extract.csv").read_bytes())
    path = moved / "run.toml"
    path.write_text(OWN_CONFIG.replace('"extract.csv"', f'"{moved / "renamed.csv"}"'))
    config = load_config(path)
    stamp = (out / "latent_class" / "posterior.nc").stat().st_mtime_ns
    messages = []
    fit_run(config, out, n_workers=1, progress=False, log=messages.append)
    assert any("latent_class: unchanged since the last run" in m for m in messages)
    assert (out / "latent_class" / "posterior.nc").stat().st_mtime_ns == stamp
    manifest = json.loads((out / "manifest.json").read_text())
    sha = provenance.sha256_file(moved / "renamed.csv")
    rule = SuppressionRule(10, "c")
    assert manifest["sections"]["latent_class"]["key"] == section_key("latent_class", config["latent_class"], sha, rule)
    assert manifest["data"]["extract"] == "renamed.csv" and str(moved) not in (out / "manifest.json").read_text()


def test_extract_path_is_relative_to_the_config_and_expands_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    base = {"_path": str(tmp_path / "cfg" / "run.toml")}
    assert extract_path({**base, "data": {"extract": "sub/x.csv"}}) == tmp_path / "cfg" / "sub" / "x.csv"
    assert extract_path({**base, "data": {"extract": "~/x.csv"}}) == tmp_path / "home" / "x.csv"
    assert extract_path({**base, "data": {"extract": str(tmp_path / "abs.csv")}}) == tmp_path / "abs.csv"


def test_own_extract_errors_name_file_keys_and_path(tmp_path):
    path = tmp_path / "both.toml"
    # seeds in these configs are only parsed (config errors), never drawn from: not shifted
    path.write_text('[data]\npreset = "tiny"\nseed = 1\nextract = "x.csv"\n[latent_class]\nk = 2\nk_max = 0\n')
    with pytest.raises(UserError, match=r"both.toml: data.extract and data.preset, data.seed given together"):
        load_config(path)
    path.write_text('[data]\nseed = 1\nextract = "x.csv"\n[latent_class]\nk = 2\nk_max = 0\n')
    with pytest.raises(UserError, match=r"data.extract and data.seed given together"):
        load_config(path)
    path = tmp_path / "absent.toml"
    path.write_text('[data]\nextract = "nowhere/absent.csv"\n[latent_class]\nk = 2\nk_max = 0\n')
    with pytest.raises(UserError) as info:
        fit_run(load_config(path), tmp_path / "out", log=lambda m: None)
    assert str(tmp_path / "nowhere" / "absent.csv") in str(info.value) and "data.extract" in str(info.value)
    assert "file not found" in str(info.value) and not (tmp_path / "out").exists()
    # An extract that fails validation: every problem reported, nothing fitted or written.
    (tmp_path / "bad.csv").write_text("child_id,episode_id\nA1,E1\n")
    path.write_text('[data]\nextract = "bad.csv"\n[latent_class]\nk = 2\nk_max = 0\n')
    with pytest.raises(UserError) as info:
        fit_run(load_config(path), tmp_path / "out", log=lambda m: None)
    assert info.value.exit_code == 2 and "bad.csv does not pass validation" in str(info.value)
    assert "required column is missing" in str(info.value) and not (tmp_path / "out").exists()


def test_new_section_settings_are_checked_before_any_data_or_fit(tmp_path):
    path = tmp_path / "lc.toml"
    path.write_text('[data]\nextract = "absent.csv"\n[latent_class]\nk_min = 3\nk_max = 2\n')
    with pytest.raises(UserError, match=r"lc.toml: \[latent_class\] k_max 2 is below k_min 3"):
        fit_run(load_config(path), tmp_path / "out", log=lambda m: None)  # before the missing file
    path = tmp_path / "sys.toml"
    path.write_text('[system]\nmodels = ["trends", "nope"]\n')
    with pytest.raises(UserError, match=r"sys.toml: \[system\] models \['trends', 'nope'\]: choose from trends"):
        fit_run(load_config(path), tmp_path / "out", log=lambda m: None)
    assert not (tmp_path / "out").exists()
