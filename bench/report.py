"""The outputs of a run: the console table, latest.json, report.md and its chart."""

import json
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import Outcome, Row

HEADER = ("scenario", "metric", "ours", "ceiling", "ours/ceiling", "goal", "met?")


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    return f"{text} {unit}".strip()


def _met(row: Row) -> str:
    return {True: "yes", False: "NO", None: "—"}[row.met]


def table_rows(outcomes: Sequence[Outcome]) -> list[tuple[str, ...]]:
    lines: list[tuple[str, ...]] = []
    for outcome in outcomes:
        if outcome.error:
            lines.append((outcome.scenario, "FAILED", outcome.error[:60], "", "", "", "NO"))
        for row in outcome.rows:
            ratio = row.ratio
            lines.append(
                (
                    row.scenario,
                    row.metric,
                    _number(row.ours, row.unit),
                    _number(row.ceiling, row.unit),
                    "—" if ratio is None else f"{ratio:.2f}",
                    row.goal,
                    _met(row),
                )
            )
    return lines


def console_table(outcomes: Sequence[Outcome]) -> str:
    lines = [HEADER, *table_rows(outcomes)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines
    )


def as_json(outcomes: Sequence[Outcome], *, quick: bool) -> dict[str, Any]:
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": {"python": platform.python_version(), "cpus": _cpus()},
        "scenarios": [
            {
                "scenario": o.scenario,
                "measured_at": o.measured_at,
                "quick": o.quick,
                "seconds": round(o.seconds, 1),
                "error": o.error,
                "details": o.details,
                "rows": [
                    {
                        "metric": r.metric,
                        "unit": r.unit,
                        "ours": r.ours,
                        "ceiling": r.ceiling,
                        "ratio": r.ratio,
                        "goal": r.goal,
                        "met": r.met,
                        "note": r.note,
                        "target": r.target,
                    }
                    for r in o.rows
                ],
            }
            for o in outcomes
        ],
    }


def from_json(document: dict[str, Any]) -> list[Outcome]:
    """The outcomes a previous run wrote (to keep them beside a run of a few scenarios)."""
    outcomes = []
    for item in document.get("scenarios", []):
        outcome = Outcome(
            item["scenario"],
            details=item.get("details", {}),
            error=item.get("error"),
            seconds=item.get("seconds", 0.0),
            measured_at=item.get("measured_at", document.get("generated_at", "")),
            quick=item.get("quick", document.get("quick", False)),
        )
        outcome.rows = [
            Row(
                item["scenario"],
                r["metric"],
                r["unit"],
                r["ours"],
                r["ceiling"],
                r["goal"],
                r["met"],
                r.get("note", ""),
                r.get("target"),
            )
            for r in item.get("rows", [])
        ]
        outcomes.append(outcome)
    return outcomes


def merged(previous: Path, outcomes: Sequence[Outcome], order: Sequence[str]) -> list[Outcome]:
    """``outcomes`` in place of the same scenarios of the previous latest.json, others kept."""
    fresh = {o.scenario: o for o in outcomes}
    kept: dict[str, Outcome] = {}
    if previous.exists():
        kept = {o.scenario: o for o in from_json(json.loads(previous.read_text()))}
    kept.update(fresh)
    return [kept[name] for name in order if name in kept]


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def chart(outcomes: Sequence[Outcome], path: Path) -> None:
    """A bar per throughput ratio (ours / ceiling, higher is better), red where the goal is not
    met, with the goal marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for o in outcomes for r in o.rows if r.ratio is not None and r.unit.endswith("/s")]
    labels = [f"{r.scenario}\n{r.metric}" for r in rows]
    ratios = [r.ratio or 0.0 for r in rows]
    colours = ["#c0392b" if r.met is False else "#2e86c1" for r in rows]
    figure, axes = plt.subplots(figsize=(max(6.0, 1.1 * len(rows)), 4.5))
    axes.bar(range(len(rows)), ratios, color=colours)
    axes.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    axes.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
    axes.set_ylabel("ours / ceiling")
    axes.set_title("Throughput / ceiling, same run (black: goal; red: not met)", fontsize=9)
    for x, (ratio, row) in enumerate(zip(ratios, rows, strict=True)):
        axes.text(x, ratio, f"{ratio:.2f}", ha="center", va="bottom", fontsize=7)
        if row.target is not None:
            axes.hlines(row.target, x - 0.4, x + 0.4, color="black", linewidth=1.5)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def markdown(outcomes: Sequence[Outcome], *, quick: bool, chart_name: str) -> str:
    lines = [
        "# Benchmark report",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        + (" with `--quick` (smaller sizes, shorter runs)." if quick else ".")
        + " A run of some scenarios keeps the others' last figures (see when each was measured).",
        "Every figure is ours against a ceiling measured in the same run, on the same data,",
        "alternating runs (ours, ceiling, ours, ceiling…); each figure is the median.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(outcomes)]
    lines += ["", f"![ratios]({chart_name})", ""]
    missed = [r for o in outcomes for r in o.rows if r.met is False]
    failed = [o for o in outcomes if o.error]
    if missed or failed:
        lines += ["## Goals not met", ""]
        for r in missed:
            ratio = "" if r.ratio is None else f" ({r.ratio:.2f}x the ceiling)"
            lines.append(
                f"- **{r.scenario} — {r.metric}**: {_number(r.ours, r.unit)}{ratio};"
                f" goal {r.goal}.{' ' + r.note if r.note else ''}"
            )
        for o in failed:
            lines.append(f"- **{o.scenario}** did not run to the end: {o.error}")
        lines.append("")
    lines += ["## Scenario details", ""]
    for o in outcomes:
        details = ", ".join(f"{k}: {v}" for k, v in o.details.items())
        when = f"{o.measured_at}{', quick' if o.quick else ''}, {o.seconds:.0f} s"
        lines.append(f"- **{o.scenario}** ({when}){': ' + details if details else ''}")
    return "\n".join(lines) + "\n"


def write_all(outcomes: Sequence[Outcome], directory: Path, *, quick: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "latest.json").write_text(
        json.dumps(as_json(outcomes, quick=quick), indent=2) + "\n"
    )
    try:
        chart(outcomes, directory / "ratios.png")
    except ImportError as exc:  # the dev dependency group is not installed
        print(f"no chart: {exc}")
    (directory / "report.md").write_text(markdown(outcomes, quick=quick, chart_name="ratios.png"))
