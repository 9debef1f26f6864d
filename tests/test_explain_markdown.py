"""`genbac explain --format markdown` as a pull-request comment: every section a reviewer needs,
each number read from the plan, and tables that GitHub renders (same cell count in every row)."""

from __future__ import annotations

from pathlib import Path

from genbac.cli import main
from genbac.compiler.compile import plan_spec
from genbac.compiler.schedule import fmt_tokens

BASE = (Path(__file__).resolve().parent / "fixtures" / "diff" / "base.genba").read_text()
# only the new blocks train, and English is repeated 10 times (warning GB902)
FROZEN = BASE.replace("train = all", "train = new").replace(
    'tokens = ~20B }', 'tokens = ~20B  corpus = 2B }', 1)


def explain_markdown(tmp_path, capsys, text: str) -> tuple[str, object]:
    path = tmp_path / "exp.genba"
    path.write_text(text)
    assert main(["explain", "--format", "markdown", str(path)]) == 0
    return capsys.readouterr().out, plan_spec(text, str(path))[0]


def test_sections_and_numbers(tmp_path, capsys):
    out, plan = explain_markdown(tmp_path, capsys, FROZEN)
    lines = out.splitlines()
    assert lines[0] == "## diff-base"
    for heading in ["### Model", "### Schedule", "### Training",
                    "### Estimate (assumed, not measured)", "### Warnings"]:
        assert heading in lines, heading
    # phase table: tokens and mixture weight of every language in every phase
    header = "| phase | steps | count | of run | tokens | en | de | hsb | mixture |"
    rows = lines[lines.index(header) + 2:lines.index(header) + 2 + len(plan.schedule.phases)]
    for phase, row in zip(plan.schedule.phases, rows):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == str(phase.index) and cells[2] == f"{phase.steps:,}"
        for cell, code in zip(cells[5:8], ["en", "de", "hsb"]):
            share = phase.share(code)
            assert cell == (f"{100 * share.weight:.3f}% · {fmt_tokens(share.tokens)}"
                            if share.sequences else "—")
    # layer map, drawn compactly, with a legend for its symbols and what trains
    assert "- layer map: `[0-3] +3 [4-7] +7 [8-11] +11 [12-15] +15`" in lines
    legend = next(line for line in lines if "legend:" in line)
    assert "`+n` new block" in legend and "16 layers frozen, 4 trainable" in legend
    g = plan.growth
    assert f"= {g.parameters:,} ({g.parameters / 1e9:.3f}B); trainable " \
           f"{g.trainable_parameters:,}" in out
    # estimates say they are estimates, with the utilisation they assume
    estimate = out[out.index("### Estimate"):out.index("### Warnings")]
    assert "at an assumed 40% of 0.9894 PFLOP/s each" in estimate and "time ≈ " in estimate
    assert lines[3].endswith("(estimate)**")  # the headline, too
    warnings = out[out.index("### Warnings"):]
    assert "GB902" in warnings and "exp.genba:" in warnings


def test_no_warnings_is_said(tmp_path, capsys):
    out, _ = explain_markdown(tmp_path, capsys, BASE)
    assert out.endswith("### Warnings\nnone\n")
    assert "every layer trains" in out


def test_tables_are_well_formed(tmp_path, capsys):
    out, _ = explain_markdown(tmp_path, capsys, FROZEN)
    tables: list[list[str]] = []
    previous = ""
    for line in out.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(line)
        previous = line
    assert len(tables) == 3  # phases, languages, and the GPUs' parallelism
    for table in tables:
        assert {row.count("|") for row in table} == {table[0].count("|")}
        assert set(table[1].replace("|", "").split()) <= {"---", "---:"}
