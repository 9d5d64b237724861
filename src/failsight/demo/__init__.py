"""`failsight demo`: a real workload through the real openai SDK against the fault server.

The workload is a fixed plan of steps, each declaring the failure class and reason it
should produce, so the end-to-end tests can compare what Prometheus stored with the plan.

Modules: `_plan` (the steps and `expected_totals`), `_workload` (drives the SDK),
`_schedule` (the continuous run's steady mix and incidents), `_continuous` (paces it),
`_report` (the summary table), `_run` (`run_demo`, which wires them together).
"""

from ._continuous import run_continuous
from ._plan import Step, build_plan, expected_totals
from ._report import render_table
from ._run import run_demo
from ._schedule import INCIDENTS, STEADY_MIX, Incident, Schedule
from ._workload import Workload, run_workload

__all__ = [
    "INCIDENTS",
    "STEADY_MIX",
    "Incident",
    "Schedule",
    "Step",
    "Workload",
    "build_plan",
    "expected_totals",
    "render_table",
    "run_continuous",
    "run_demo",
    "run_workload",
]
