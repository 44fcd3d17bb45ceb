"""Run the benchmarks: every scenario against its ceiling, measured in the same run.

    uv run python bench/run.py                 # every scenario (~8 minutes)
    uv run python bench/run.py --quick         # smaller sizes, shorter runs (~3 minutes)
    uv run python bench/run.py recipe-list     # one scenario (or several)

Prints a table and writes bench/results/latest.json, report.md and ratios.png; a run of named
scenarios replaces only those in latest.json and keeps the others' last figures (each scenario
records when it was measured). A scenario that fails is reported as failed; the others still
run. Exit status 1 if any scenario failed (a goal not met is reported, not an error).
"""

import argparse
import importlib
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Outcome, Size
from report import console_table, merged, write_all

Scenario = Callable[[Size], Outcome]


#: Scenario name → (module in bench/, function). Imported only when the scenario runs.
SCENARIOS: dict[str, tuple[str, str]] = {
    "recipe-list": ("scenarios_http", "recipe_list"),
    "recipe-list-gateway": ("scenarios_http", "recipe_list_gateway"),
    "conditional-get": ("scenarios_http", "conditional_get"),
    "ratings": ("scenarios_http", "ratings"),
    "drf-baseline": ("scenario_drf", "drf_baseline"),
    "event-pipeline": ("scenario_events", "event_pipeline"),
    "image": ("scenario_image", "image"),
    "digest": ("scenario_digest", "digest"),
    "backup": ("scenario_backup", "backup"),
}


def load(name: str) -> Scenario:
    module, function = SCENARIOS[name]
    scenario: Scenario = getattr(importlib.import_module(module), function)
    return scenario


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="*", help=f"any of: {', '.join(SCENARIOS)}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, ~3 minutes")
    parser.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    unknown = set(args.scenario) - set(SCENARIOS)
    if unknown:
        parser.error(
            f"unknown scenario {', '.join(sorted(unknown))}; any of: {', '.join(SCENARIOS)}"
        )
    size = Size(
        quick=args.quick, rounds=1 if args.quick else 3, http_seconds=3 if args.quick else 8
    )
    outcomes: list[Outcome] = []
    for name in args.scenario or list(SCENARIOS):
        print(f"== {name}", flush=True)
        started = time.monotonic()
        try:
            outcome = load(name)(size)
        except Exception as exc:
            traceback.print_exc()
            outcome = Outcome(name, error=f"{type(exc).__name__}: {exc}".splitlines()[0])
        outcome.seconds = time.monotonic() - started
        outcome.measured_at = datetime.now(UTC).isoformat(timespec="seconds")
        outcome.quick = args.quick
        outcomes.append(outcome)
        print(console_table([outcome]), flush=True)
    print()
    print(console_table(outcomes))
    if args.scenario:  # a partial run keeps the other scenarios' last figures
        outcomes = merged(args.results / "latest.json", outcomes, list(SCENARIOS))
    write_all(outcomes, args.results, quick=args.quick)
    print(f"\nwrote {args.results}/latest.json and report.md")
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
