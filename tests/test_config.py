"""Run configs: the demo config loads, and every mistake is named precisely."""

from __future__ import annotations

import pytest

from workflows import paths
from workflows.config import load_config
from workflows.errors import UserError

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
