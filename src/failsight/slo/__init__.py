"""SLOs on generation quality per call site, in Sloth's spec format, and their rules.

>>> from failsight.slo import SLOOptions, build_spec, generate_rules
>>> len(generate_rules(build_spec(SLOOptions(objective=99.5)))["groups"])
6
"""

from __future__ import annotations

from failsight.slo._rules import SLOTH_VERSION, generate_rules, rules_yaml
from failsight.slo._spec import BAD_CLASSES, PERIODS, SLOOptions, build_spec, spec_yaml

__all__ = [
    "BAD_CLASSES",
    "PERIODS",
    "SLOTH_VERSION",
    "SLOOptions",
    "build_spec",
    "generate_rules",
    "rules_yaml",
    "spec_yaml",
]
