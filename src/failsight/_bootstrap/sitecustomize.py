"""Imported first by programs started with `failsight run`.

Applies the openai patch and serves /metrics before the program's own code runs, then
hides itself from child processes and hands over to any other `sitecustomize`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys


def _bootstrap() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    port = os.environ.pop("FAILSIGHT_METRICS_PORT", "9464")
    addr = os.environ.pop("FAILSIGHT_METRICS_ADDR", "127.0.0.1")
    parts = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    rest = [part for part in parts if part and os.path.abspath(part) != here]
    if rest:
        os.environ["PYTHONPATH"] = os.pathsep.join(rest)
    else:
        os.environ.pop("PYTHONPATH", None)
    try:
        import failsight

        try:
            failsight.instrument_openai()
        except ImportError:
            print("failsight: warning: openai is not installed; nothing to patch", file=sys.stderr)
        from failsight.exposition import _metrics_url

        server, _ = failsight.start_metrics_server(port=int(port), addr=addr)
        # On stderr: the program's stdout stays its own.
        print(f"failsight: /metrics on {_metrics_url(server)}", file=sys.stderr)
    except Exception as exc:  # the program runs, with or without telemetry
        print(f"failsight: warning: telemetry not started: {exc}", file=sys.stderr)
    # Hand over to the sitecustomize this one shadowed, if there is one. When there is none
    # (the usual case), this module goes back into sys.modules: the import system reads
    # sys.modules["sitecustomize"] once this module has run, and a missing entry is the
    # `KeyError: 'sitecustomize'` that site.py would print.
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != here]
    this = sys.modules.pop("sitecustomize", None)  # None when imported under another name
    try:
        with contextlib.suppress(ImportError):
            importlib.import_module("sitecustomize")
    finally:
        if this is not None:
            sys.modules.setdefault("sitecustomize", this)


_bootstrap()
