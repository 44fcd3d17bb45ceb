"""The report keeps what a partial run did not measure."""

from pathlib import Path

from reliability.report import Report


def test_a_partial_run_keeps_the_rows_of_the_scenarios_it_did_not_run(tmp_path: Path) -> None:
    path = tmp_path / "report.md"
    full = Report()
    for key in ("poison", "cluster"):
        row = full.row(key)
        row.load, row.lost, row.duplicated, row.outcome = "100", "0", "0", "pass"
        row.notes.append(f"{key} details")
    full.write(path)

    partial = Report()
    partial.row("poison").load, partial.row("poison").outcome = "7", "pass"
    partial.write(path)

    written = path.read_text()
    assert "| 7 |" in written and "poison details" not in written  # measured again: replaced
    assert "cluster details" in written  # not run this time: kept, with its details
    cluster = next(line for line in written.splitlines() if line.startswith("| Load on a 3-node"))
    assert cluster.endswith("| 100 | - | - | - | 0 | 0 | pass |")
