"""The reliability report: one row per scenario, written to reliability/report.md.

The layout is fixed (every scenario has its row, in this order) so the file diffs cleanly
between runs; only the figures change. A scenario this run did not run (one test run alone, the
disruptive ones outside ``make test-reliability``) keeps the row and details of the last run
that did: running part of the suite never erases what the rest measured.
"""

from dataclasses import dataclass, field
from pathlib import Path

from reliability import known_bugs

REPORT_PATH = Path(__file__).resolve().parents[2] / "reliability" / "report.md"

#: Scenario keys in report order, with their titles.
SCENARIOS = {
    "fuzz": "Fuzzing (schemathesis, every API through the gateway)",
    "poison": "Poison messages on every consumer queue",
    "security": "Security table through the gateway",
    "connections-dropped": "Load + broker drops every connection",
    "workers-killed": "Load + SIGKILL of a worker of each service",
    "broker-restart": "Load + broker restart (RELIABILITY_DISRUPTIVE)",
    "postgres-restart": "Load + PostgreSQL restart (RELIABILITY_DISRUPTIVE)",
    "cluster": "Load on a 3-node RabbitMQ cluster, leaders stopped and killed (DISRUPTIVE)",
}


@dataclass
class Row:
    load: str = "-"
    faults: str = "-"
    accepted: str = "-"
    verified: str = "-"
    lost: str = "-"
    duplicated: str = "-"
    outcome: str = "not run"
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    rows: dict[str, Row] = field(default_factory=lambda: {key: Row() for key in SCENARIOS})

    def row(self, key: str) -> Row:
        return self.rows[key]

    def render(self) -> str:
        lines = [
            "# Reliability report",
            "",
            "Written by `make test-reliability` (tests/reliability). Figures vary between runs;",
            "`lost` and `duplicated` must be 0. The disruptive scenarios restart the shared broker",
            "and database: they run only with `RELIABILITY_DISRUPTIVE=1`, as does the cluster",
            "scenario (three RabbitMQ nodes of its own behind haproxy; about 11 minutes).",
            "`effects verified` counts checks, not requests: an accepted registration has three",
            "(the notifier's copy, the backup's copy, one welcome mail), a recipe two (its image",
            "processed once, the notifier's copy), a rating two (stored with its score, the",
            "notifier's copy), a read one.",
            "",
            "| scenario | load held (requests) | faults injected | requests accepted"
            " | effects verified | lost | duplicated | outcome |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key, title in SCENARIOS.items():
            r = self.rows[key]
            cells = [title, r.load, r.faults, r.accepted, r.verified, r.lost, r.duplicated]
            lines.append("| " + " | ".join([*cells, r.outcome]) + " |")
        lines += ["", "## Details", ""]
        for key, title in SCENARIOS.items():
            for note in self.rows[key].notes:
                lines.append(f"- {title}: {note}")
        lines += ["", "## Findings (a fixed one keeps its regression test)", ""]
        lines += [f"- {bug}" for bug in known_bugs.ALL] or ["- none"]
        return "\n".join(lines) + "\n"

    def write(self, path: Path = REPORT_PATH) -> None:
        earlier = previous_rows(path.read_text()) if path.exists() else {}
        for key, title in SCENARIOS.items():
            if self.rows[key].outcome == "not run" and title in earlier:
                self.rows[key] = earlier[title]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render())


def previous_rows(text: str) -> dict[str, Row]:
    """The rows (and their details) of a report as ``render`` wrote it, by scenario title."""
    rows: dict[str, Row] = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] in SCENARIOS.values() and len(cells) == 8:
            load, faults, accepted, verified, lost, duplicated, outcome = cells[1:]
            rows[cells[0]] = Row(load, faults, accepted, verified, lost, duplicated, outcome)
    for line in text.splitlines():
        for title, row in rows.items():
            if line.startswith(f"- {title}: "):
                row.notes.append(line.removeprefix(f"- {title}: "))
    return rows
