"""``workflows joint``: the report end to end on the tiny preset with short chains (one joint
fit, shared by every test here), its caching, its config errors, its honesty about
convergence and its confidentiality.

The joint model's likelihood and its recovery of class-specific gradients are tested on
simulated truth in tests/test_joint_model.py; here the report's tables are checked against
the extract they came from and against identities that hold whatever the fit."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from _seeds import seed
from models.suppression import SuppressionRule
from models.vocabulary import DEMAND_CLASSES
from workflows import cli, joint
from workflows.config import load_config
from workflows.errors import UserError
from workflows.joint import NOT_FOR_CITATION, JointRun, three_step_table, write_joint_report
from workflows.simulate import write_simulation

#: Two chains of 60 draws: far below the gate's ESS >= 400, so the fit is never citable.
SHORT = JointRun(k=2, max_factors=5, episodes=400, draws=60, tune=60, chains=2, seed=seed(3), n_starts=2,
                 steepest=("neglect",))
MODEL_TABLES = ("class_gradients", "class_contextual", "class_inverse_intervention", "class_probability",
                "steepest", "class_profiles", "class_sizes")
STAGES = ["s47", "icpc", "cpp", "lac"]


@pytest.fixture(scope="module")
def tiny_extract(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-joint")
    write_simulation(out, "tiny", seed=seed(4))
    return out / "extract.csv"


@pytest.fixture(scope="module")
def report(tiny_extract, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "joint"
    messages = []
    write_joint_report(tiny_extract, out, SHORT, SuppressionRule(10), log=messages.append)
    return out, messages


def _read(out, name):
    return pd.read_csv(out / "tables" / f"{name}.csv")


def test_report_folder_tables_and_figures(report):
    out, messages = report
    for name in ("report.md", "report.html", "manifest.json", "posterior.nc",
                 *(f"tables/{t}.csv" for t in (*MODEL_TABLES, "stage_counts"))):
        assert (out / name).exists(), name
    for name in ("class_gradients", "class_probability_by_decile", "class_profiles"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
    manifest = json.loads((out / "manifest.json").read_text())
    names = manifest["classes"]
    # Study names: two distinct study classes, each with its profile distance reported.
    assert len(names) == 2 and len(set(names)) == 2 and set(names) <= set(DEMAND_CLASSES)
    sizes = _read(out, "class_sizes").set_index("class")
    assert set(sizes.index) == set(names)
    assert sizes["share"].sum() == pytest.approx(1.0, abs=0.01)
    assert (sizes["study_profile_distance"] >= 0).all()
    # Class gradients: odds ratios with ordered intervals, every stage x class.
    grad = _read(out, "class_gradients")
    assert sorted(zip(grad["stage"], grad["class"])) == sorted((s, c) for s in STAGES for c in names)
    assert ((grad["lower"] <= grad["median"]) & (grad["median"] <= grad["upper"]) & (grad["lower"] > 0)).all()
    # Each class's contextual effect is the common between effect minus its own gradient,
    # and the inverse intervention contrast is its exponential scaled by the LA quartile gap.
    ctx = _read(out, "class_contextual").set_index(["stage", "class"])
    inv = _read(out, "class_inverse_intervention").set_index(["stage", "class"])
    clear = ctx["median"].abs() > 0.01
    assert (np.sign(np.log(inv.loc[clear, "median"])) == -np.sign(ctx.loc[clear, "median"])).all()
    # P(steepest): a probability over the two classes at each stage; the class shifts are
    # shared across stages, so every stage ranks the classes alike.
    steep = _read(out, "steepest").set_index(["stage", "class"])["P(steepest)"]
    np.testing.assert_allclose(steep.groupby(level="stage").sum(), 1.0)
    assert steep.unstack("class").nunique().max() == 1
    # Stage counts come from the sampled episodes: 400 assessed, each stage at risk after its parent.
    counts = _read(out, "stage_counts").set_index("stage")
    assert counts.loc["s47", "at_risk"] == counts.loc["lac", "at_risk"] == 400
    assert counts.loc["icpc", "at_risk"] == counts.loc["s47", "reached"]
    assert counts.loc["cpp", "at_risk"] == counts.loc["icpc", "reached"]
    md = (out / "report.md").read_text()
    assert "## Headlines" in md and "per decile step within the LA" in md and "90% CrI" in md
    assert manifest["config"]["k"] == 2 and "/" not in manifest["inputs"]["extract"]["path"]
    assert any("fitting the joint model" in m for m in messages)


def test_headline_question_matches_the_rank_table(report):
    out, _ = report
    post = xr.open_dataset(out / "posterior.nc", group="posterior")
    names = [str(c) for c in post["class"].values]
    steep = joint.steepest_table(post)["P(steepest)"]
    for name in names:  # P(this class alone has the steepest gradient) = P(rank 1)
        p = joint.headline_probability(post, (name,))
        # the rank table is published rounded to 4 decimals
        np.testing.assert_allclose(p.to_numpy(), steep.xs(name, level="class").reindex(p.index).to_numpy(),
                                   rtol=0, atol=5e-5)
    assert joint.headline_probability(post, ("no_such_class",)) is None
    md = (out / "report.md").read_text()
    if "neglect" in names:
        assert (out / "tables" / "headline.csv").exists() and "Is the gradient steepest for Neglect?" in md
    else:
        assert not (out / "tables" / "headline.csv").exists() and "cannot be asked of this fit" in md


def test_rerun_with_the_same_inputs_is_reused(report, tiny_extract, monkeypatch):
    out, _ = report
    before = json.loads((out / "manifest.json").read_text())

    def no_refit(*args, **kwargs):
        raise AssertionError("refitted an unchanged run")

    monkeypatch.setattr(joint, "analyse_extract", no_refit)
    messages = []
    assert write_joint_report(tiny_extract, out, SHORT, SuppressionRule(10), log=messages.append) == out
    assert any("unchanged" in m for m in messages)
    assert json.loads((out / "manifest.json").read_text())["created_utc"] == before["created_utc"]
    # Any change of setting or suppression rule is a different run.
    key = joint.cache_key(tiny_extract, SHORT, SuppressionRule(10))
    assert key == before["cache_key"]
    assert joint.cache_key(tiny_extract, JointRun(**{**SHORT.__dict__, "prob": 0.95}), SuppressionRule(10)) != key
    assert joint.cache_key(tiny_extract, SHORT, SuppressionRule(5)) != key


def test_failed_gate_marks_every_model_table_not_for_citation(report):
    out, _ = report
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["convergence"]["joint"]["citable"]
    for name in MODEL_TABLES:
        table = _read(out, name)
        assert (table["status"] == NOT_FOR_CITATION).all(), name
    assert "status" not in _read(out, "stage_counts").columns  # observed counts, not estimates
    md = (out / "report.md").read_text()
    status = md.split("## Status")[1].split("## Headlines")[0]
    assert NOT_FOR_CITATION in status
    assert md.count(f"[{NOT_FOR_CITATION}]") >= len(STAGES)  # every headline and model table caption


def test_no_case_level_data_in_any_output(report, tiny_extract):
    out, _ = report
    raw = pd.read_csv(tiny_extract, dtype=str)
    ids = set(raw["episode_id"]) | set(raw["child_id"])
    lsoas = set(raw["lsoa_code"])
    for path in out.rglob("*"):
        if path.suffix in (".csv", ".md", ".html", ".json"):
            text = path.read_text()
            assert not any(i in text for i in ids), path
            assert not any(code in text for code in lsoas), path  # small-area values stay out
        if path.suffix == ".csv":
            columns = " ".join(pd.read_csv(path).columns).lower()
            assert "episode_id" not in columns and "child" not in columns and "lsoa" not in columns, path
    post = xr.open_dataset(out / "posterior.nc", group="posterior")
    dims = set(post.dims)
    assert not any(("lsoa" in d) or ("pattern" in d) or ("episode" in d) for d in dims), dims
    assert {"class_gradient", "class_weight", "item_prob", "contextual_effect"} <= set(post.data_vars)
    assert not (set(xr.open_datatree(out / "posterior.nc").groups) - {"/", "/posterior", "/sample_stats"})


def test_config_errors_name_the_key(tmp_path, capsys):
    with pytest.raises(UserError, match=r"run\.toml: joint\.k = 0"):
        JointRun.from_config({"k": 0}, "run.toml")
    with pytest.raises(UserError, match=r"joint\.class_slopes = 'per_stage'"):
        JointRun.from_config({"class_slopes": "per_stage"}, "run.toml")
    with pytest.raises(UserError, match=r"unknown key joint\.classes"):
        JointRun.from_config({"classes": 4}, "run.toml")
    with pytest.raises(UserError, match=r"joint\.steepest = \['neglect', 'complex_needs_9'\]"):
        JointRun.from_config({"steepest": ["neglect", "complex_needs_9"]}, "run.toml")
    with pytest.raises(UserError, match=r"joint\.factors .*not_a_factor"):
        JointRun.from_config({"factors": ["neglect", "not_a_factor"]}, "run.toml")
    config = tmp_path / "bad.toml"
    # seeds in these configs are only parsed (config errors), never drawn from: not shifted
    config.write_text('[data]\npreset = "tiny"\nseed = 1\n[joint]\nk = "four"\n')
    with pytest.raises(UserError, match=r"bad\.toml: joint\.k = 'four': expected int"):
        load_config(config)
    # Through the CLI: a message naming the key and exit code 2, no traceback, nothing fitted.
    only_joint = tmp_path / "only.toml"
    only_joint.write_text("[joint]\nk = 3\nnames = \"labels\"\n")
    extract = tmp_path / "extract.csv"
    extract.write_text("not read\n")
    code = cli.main(["joint", "--config", str(only_joint), "--extract", str(extract)])
    assert code == 2
    err = capsys.readouterr().err
    assert "joint.names = 'labels'" in err and "only.toml" in err and "Traceback" not in err
    assert JointRun.from_config(load_config("joint")["joint"], "joint.toml").three_step


def test_three_step_table_against_itself(report):
    """The comparison table of one posterior with itself: equal columns, width ratio 1, and
    the headline probability under both."""
    out, _ = report
    post = xr.open_dataset(out / "posterior.nc", group="posterior")
    name = str(post["class"].values[0])
    table = three_step_table(post, post, 0.9, (name,))
    for col in ("mean", "lower", "upper", "p_steepest", "p_headline"):
        np.testing.assert_allclose(table[f"joint_{col}"], table[f"three_step_{col}"])
    np.testing.assert_allclose(table["width_ratio"], 1.0)
    # A class missing from the three-step fit (no modal episodes) is left out, not misaligned.
    fewer = three_step_table(post, post.isel({"class": [0]}), 0.9)
    assert set(fewer.index.get_level_values("class")) == {name}
