"""Run configs: the demo config loads, and every mistake is named precisely."""

from __future__ import annotations

import pytest

from workflows import paths
from workflows.config import load_config
from workflows.errors import UserError

#: The seeds in these configs are only parsed, never used to draw anything: they stay as
#: written (not shifted by CSC_TEST_SEED_OFFSET, tests/_seeds.py).
GOOD = '[data]\npreset = "tiny"\nseed = 7\n'


def _write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(path) -> str:
    with pytest.raises(UserError) as info:
        load_config(path)
    return str(info.value)


def test_demo_config_is_the_six_la_preset_with_an_int_seed():
    config = load_config("demo")
    assert config["data"]["preset"] == "six-la"
    assert type(config["data"]["seed"]) is int
    assert config["report"] == {"suppression_threshold": 10, "suppression_marker": "c"}
    assert config["_path"] == str(paths.CONFIG_DIR / "demo.toml")


def test_a_toml_path_loads_and_defaults_are_filled(tmp_path):
    config = load_config(_write(tmp_path, GOOD))
    assert config["data"] == {"preset": "tiny", "seed": 7}
    assert config["report"] == {"suppression_threshold": 10, "suppression_marker": "c"}
    config = load_config(_write(tmp_path, GOOD + "[report]\nsuppression_threshold = 5\n", "b.toml"))
    assert config["report"]["suppression_threshold"] == 5


def test_unknown_section_is_named(tmp_path):
    msg = _error(_write(tmp_path, GOOD + "[reprot]\nx = 1\n"))
    assert "reprot" in msg and "data" in msg and "report" in msg


def test_unknown_key_is_named_with_the_expected_keys(tmp_path):
    msg = _error(_write(tmp_path, '[data]\npresett = "tiny"\nseed = 7\n'))
    assert "data.presett" in msg
    assert "preset" in msg.replace("data.presett", "") and "seed" in msg


@pytest.mark.parametrize("line, key, kind", [
    ('seed = "abc"', "data.seed", "int"),
    ("seed = true", "data.seed", "int"),
    ("seed = 1.5", "data.seed", "int"),
])
def test_wrong_type_names_key_and_expected_type(tmp_path, line, key, kind):
    msg = _error(_write(tmp_path, f'[data]\npreset = "tiny"\n{line}\n'))
    assert key in msg and kind in msg


def test_wrong_type_in_report_section(tmp_path):
    msg = _error(_write(tmp_path, GOOD + "[report]\nsuppression_marker = 3\n"))
    assert "report.suppression_marker" in msg and "str" in msg


def test_missing_required_key_is_named(tmp_path):
    msg = _error(_write(tmp_path, '[data]\npreset = "tiny"\n'))
    assert "data.seed" in msg and "missing" in msg
    msg = _error(_write(tmp_path, "[report]\nsuppression_threshold = 5\n", "c.toml"))
    assert "data.preset" in msg


def test_invalid_toml_is_reported_with_the_file(tmp_path):
    path = _write(tmp_path, '[data\npreset = "tiny"\n')
    msg = _error(path)
    assert "not valid TOML" in msg and str(path) in msg


def test_section_that_is_not_a_table(tmp_path):
    msg = _error(_write(tmp_path, 'data = 3\n'))
    assert "data" in msg and "table" in msg


def test_unknown_config_name_lists_the_known_configs():
    msg = _error("no-such-config")
    assert "no-such-config" in msg
    known = sorted(p.stem for p in paths.CONFIG_DIR.glob("*.toml"))
    assert "demo" in known
    assert all(name in msg for name in known)


def test_missing_toml_path_is_a_user_error(tmp_path):
    msg = _error(tmp_path / "absent.toml")
    assert "absent.toml" in msg


def test_new_sections_check_their_keys_and_types(tmp_path):
    msg = _error(_write(tmp_path, GOOD + "[sbc]\nreplicate = 10\n"))
    assert "sbc.replicate" in msg and "replicates" in msg
    msg = _error(_write(tmp_path, GOOD + '[compare]\nvariants = "full"\n', "d.toml"))
    assert "compare.variants" in msg and "list" in msg
    msg = _error(_write(tmp_path, GOOD + "[sensitivity]\ndraws = 1.5\n", "e.toml"))
    assert "sensitivity.draws" in msg and "int" in msg


@pytest.mark.parametrize("name", ["six-la", "sensitivity", "compare", "sbc", "demo", "system", "own-extract"])
def test_shipped_run_configs_load_and_check(name):
    from workflows.fit import CHECKS, SECTIONS
    from workflows.sbc import SBCRun

    config = load_config(name)
    for section in config["_sections"]:
        if section in SECTIONS:
            CHECKS[section](config)
    if "sbc" in config["_sections"]:
        assert SBCRun.from_config(config["sbc"], config["_path"]).replicates >= 100


def test_sbc_section_values_are_checked():
    from workflows.sbc import SBCRun

    with pytest.raises(UserError, match=r"x.toml: \[sbc\] generator_prior 'flat': unknown prior set"):
        SBCRun.from_config({"generator_prior": "flat"}, "x.toml")
    with pytest.raises(UserError, match=r"unknown SBC preset 'huge'"):
        SBCRun.from_config({"preset": "huge"}, "x.toml")
    with pytest.raises(UserError, match=r"n_ranks 500: expected 1..chains x draws \(200\)"):
        SBCRun.from_config({"n_ranks": 500, "draws": 100, "chains": 2}, "x.toml")


def test_data_names_a_preset_or_an_own_extract_never_both_nor_neither(tmp_path):
    config = load_config(_write(tmp_path, '[data]\nextract = "~/la/extract.csv"\n[gradient]\n'))
    assert config["data"] == {"extract": "~/la/extract.csv"}  # as written; `fit` resolves it
    msg = _error(_write(tmp_path, '[data]\nextract = 3\n', "a.toml"))
    assert "a.toml" in msg and "data.extract" in msg and "str" in msg
    msg = _error(_write(tmp_path, '[data]\npreset = "tiny"\nseed = 1\nextract = "x.csv"\n', "b.toml"))
    assert "b.toml" in msg and "data.extract" in msg and "data.preset" in msg
    msg = _error(_write(tmp_path, '[data]\nseed = 1\n[gradient]\n', "c.toml"))
    assert "c.toml" in msg and "missing" in msg and "data.preset" in msg and "data.extract" in msg
    msg = _error(_write(tmp_path, '[gradient]\ndraws = 10\n', "d.toml"))
    assert "d.toml" in msg and "data.preset" in msg and "data.extract" in msg
    msg = _error(_write(tmp_path, '[data]\nextract = " "\n', "e.toml"))
    assert "data.extract" in msg


def test_a_system_only_config_needs_no_data_section(tmp_path):
    from workflows.fit import CHECKS

    config = load_config(_write(tmp_path, '[system]\nmodels = ["trends"]\nmax_las = 5\n'))
    assert config["data"] == {} and config["_sections"] == ("system",)
    CHECKS["system"](config)
    msg = _error(_write(tmp_path, '[system]\n[latent_class]\nk = 2\nk_max = 0\n', "b.toml"))
    assert "data.preset" in msg and "data.extract" in msg  # latent_class reads the extract


def test_new_fit_sections_check_their_values(tmp_path):
    from workflows.fit import CHECKS

    config = load_config(_write(tmp_path, GOOD + '[latent_class]\nsampler = "stan"\n'))
    with pytest.raises(UserError, match=r"run.toml: \[latent_class\] sampler 'stan': choose one of"):
        CHECKS["latent_class"](config)
    msg = _error(_write(tmp_path, GOOD + "[latent_class]\nregression = 1\n", "b.toml"))
    assert "latent_class.regression" in msg and "bool" in msg
    config = load_config(_write(tmp_path, GOOD + '[system]\nprob = 0.2\n', "c.toml"))
    with pytest.raises(UserError, match=r"c.toml: \[system\] prob 0.2: expected a credible level"):
        CHECKS["system"](config)
