"""How reports read: diagnostics rounded for readers (towards failing the gate), every report
opening with its key figure and a short summary, and no broken image or link."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from _links import broken_links  # noqa: E402
from workflows.report_format import Section, display_table, lead, markdown_table, render_html, render_markdown  # noqa: E402


def test_ess_whole_numbers_and_r_hat_two_decimals_rounded_towards_failing():
    table = pd.DataFrame({"median": [1.23456, 2.0], "r_hat": [1.0031, 1.01], "ess_bulk": [901.532, 399.99],
                          "min_ess_tail": [1200.0, "c"], "max_r_hat": [1.0104, float("nan")]},
                         index=["a", "b"])
    shown = display_table(table)
    assert list(shown["ess_bulk"]) == ["901", "399"]          # 399.99 fails the gate: never shown as 400
    assert list(shown["r_hat"]) == ["1.01", "1.01"]           # exactly 1.01 passes and stays 1.01
    assert shown.loc["a", "max_r_hat"] == "1.02"              # 1.0104 fails: never shown as 1.01
    assert shown.loc["b", "min_ess_tail"] == "c"              # a suppression marker is left alone
    assert shown.loc["a", "min_ess_tail"] == "1200"
    assert shown.loc["a", "median"] == 1.23456                # other columns as given
    assert table.loc["a", "ess_bulk"] == 901.532              # the data are not changed
    md = markdown_table(table)
    assert "901.532" not in md and "| 901 |" in md
    assert "901.532" not in render_html("t", [Section("s", tables=[("t", table)])])


def test_multiindex_columns_are_formatted_by_their_last_level():
    table = pd.DataFrame([[1.00412, 512.7]], columns=pd.MultiIndex.from_tuples([("mu", "r_hat"), ("mu", "ess_bulk")]))
    assert list(display_table(table).iloc[0]) == ["1.01", "512"]


def _figure(path, colour):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1], color=colour)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def test_report_opens_with_status_key_figure_and_summary_before_the_prose(tmp_path):
    (tmp_path / "figures").mkdir()
    first = _figure(tmp_path / "figures" / "first.png", "red")
    key = _figure(tmp_path / "figures" / "key.png", "blue")
    sections = [Section("Status", ["Every parameter passed.", "A second status line."]),
                Section("Headlines", [f"Headline {i}." for i in range(8)]),
                Section("Detail", ["Long prose."], figures=[("First", first), ("The key one", key)])]
    opening = lead(sections, "key.png")
    assert opening.summary == ["Every parameter passed.", "Headline 0.", "Headline 1.", "Headline 2."]
    assert opening.figure == ("The key one", key)
    assert lead(sections).figure == ("First", first)  # no key named: the first figure

    page = render_html("Report", sections, opening)
    assert page.index('id="key-figure"') < page.index("<h2>") and page.index("Headline 2.") < page.index("<h2>")
    assert page.count("data:image/png;base64,") == 2  # the key figure is embedded once, at the top
    assert 'href="#key-figure"' in page
    (tmp_path / "report.html").write_text(page, encoding="utf-8")
    assert broken_links(tmp_path / "report.html") == []

    md = render_markdown("Report", sections, tmp_path, opening)
    top = md.split("## Status")[0]
    assert "**Every parameter passed.**" in top and "](figures/key.png)" in top and "- Headline 2." in top
    assert md.count("figures/key.png") == 1 and "](figures/first.png)" in md


def test_the_link_checker_finds_what_is_broken(tmp_path):
    (tmp_path / "ok.png").write_bytes(_figure(tmp_path / "x.png", "k").read_bytes())
    (tmp_path / "fake.png").write_text("not an image")
    page = tmp_path / "index.html"
    page.write_text('<a href="ok.png">ok</a><img src="ok.png"><a href="missing/report.html">x</a>'
                    '<img src="fake.png"><a href="#nowhere">y</a><a id="here" href="#here">z</a>'
                    '<img src="data:image/png;base64,AAAA"><a href="https://example.org/">web</a>', encoding="utf-8")
    problems = broken_links(page)
    assert len(problems) == 4, problems
    assert any("missing/report.html" in p for p in problems) and any("fake.png" in p for p in problems)
    assert any("nowhere" in p for p in problems) and any("not a PNG" in p and "data:" in p for p in problems)
