"""`failsight doctor`: the debugging checklist for a failed generation, run live.

Checks a key, a base URL, the model list, a chat call, rate-limit headers, what a
`length` cut looks like, and (when asked) one image and one video job, each with a
verdict (ok / warn / fail), a one-line finding and a one-line fix, within one deadline for
the whole run. Needs `httpx` only.
"""

from __future__ import annotations

from ._checked import parse_validator
from ._model import Check, Verdict, exit_status
from ._report import SCHEMA, protect, render_json, render_text, to_document
from ._run import DEADLINE_S, GROUPS, DoctorConfig, Report, cost_estimate, run_checks, run_doctor

__all__ = [
    "DEADLINE_S",
    "GROUPS",
    "SCHEMA",
    "Check",
    "DoctorConfig",
    "Report",
    "Verdict",
    "cost_estimate",
    "exit_status",
    "parse_validator",
    "protect",
    "render_json",
    "render_text",
    "run_checks",
    "run_doctor",
    "to_document",
]
