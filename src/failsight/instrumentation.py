"""The OpenTelemetry instrumentor for `opentelemetry-instrument python app.py`.

Registered under the `opentelemetry_instrumentor` entry point group. When the
`opentelemetry-instrumentation` package is installed it is a `BaseInstrumentor`;
without it, a class with the same `instrument()`/`uninstrument()` surface.

>>> from failsight.instrumentation import FailsightOpenAIInstrumentor
>>> FailsightOpenAIInstrumentor().instrumentation_dependencies()
('openai >= 1.0',)
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Collection
from typing import Any, Final

from opentelemetry.metrics import get_meter_provider

from failsight._sdk_patch import instrument_openai, uninstrument_openai
from failsight.exposition import start_metrics_server

__all__ = ["FailsightOpenAIInstrumentor"]

_DEPENDENCIES = ("openai >= 1.0",)
# `opentelemetry-instrument` serves failsight's /metrics on this port when it is set.
METRICS_PORT_ENV: Final = "FAILSIGHT_METRICS_PORT"
METRICS_ADDR_ENV: Final = "FAILSIGHT_METRICS_ADDR"
# The API's stand-ins before any MeterProvider is set.
_UNSET_METER_PROVIDERS: Final = frozenset({"_ProxyMeterProvider", "NoOpMeterProvider"})
# Settings carried over when the instrumentor re-configures with other providers.
_SETTINGS_KEPT: Final = (
    "registry", "tracer_provider", "meter_provider", "namespace", "capture_content",
    "max_content_length", "max_label_values", "max_series", "video_job_timeout",
    "max_open_video_jobs", "prices",
)  # fmt: skip


class _Instrumentor:
    """instrument()/uninstrument() with OpenTelemetry's keyword conventions."""

    _server: Any = None  # the /metrics server, when FAILSIGHT_METRICS_PORT asked for one

    def instrumentation_dependencies(self) -> Collection[str]:
        return _DEPENDENCIES

    def instrument(self, **kwargs: Any) -> None:
        self._instrument(**kwargs)

    def uninstrument(self, **kwargs: Any) -> None:
        self._uninstrument(**kwargs)

    def _instrument(self, **kwargs: Any) -> None:
        providers: dict[str, Any] = {
            key: kwargs[key] for key in ("tracer_provider", "meter_provider") if key in kwargs
        }
        if "meter_provider" not in providers:
            # Under auto-instrumentation the distro sets a global MeterProvider: use it, so
            # the semantic-convention metrics go where the service's other metrics go.
            global_provider = get_meter_provider()
            if type(global_provider).__name__ not in _UNSET_METER_PROVIDERS:
                providers["meter_provider"] = global_provider
        if providers:
            from failsight._config import configure, get_state

            settings = get_state().settings
            fields = {name: getattr(settings, name) for name in _SETTINGS_KEPT}
            fields.update(providers)
            configure(**fields)
        instrument_openai()
        port = os.environ.get(METRICS_PORT_ENV)
        if port and self._server is None:
            addr = os.environ.get(METRICS_ADDR_ENV, "127.0.0.1")
            self._server = start_metrics_server(port=int(port), addr=addr)

    def _uninstrument(self, **kwargs: Any) -> None:
        uninstrument_openai()


def _base_instrumentor() -> Any:
    """The contrib package's BaseInstrumentor, when `opentelemetry-instrumentation` is there."""
    try:
        module = importlib.import_module("opentelemetry.instrumentation.instrumentor")
    except ImportError:  # the contrib package is optional
        return None
    return getattr(module, "BaseInstrumentor", None)


_BaseInstrumentor = _base_instrumentor()

if _BaseInstrumentor is None:

    class FailsightOpenAIInstrumentor(_Instrumentor):
        """Patches the openai SDK; see `failsight.instrument_openai`."""

else:

    class FailsightOpenAIInstrumentor(_Instrumentor, _BaseInstrumentor):  # type: ignore[no-redef,misc,valid-type]
        """Patches the openai SDK; see `failsight.instrument_openai`."""

        def instrument(self, **kwargs: Any) -> None:
            _BaseInstrumentor.instrument(self, **kwargs)

        def uninstrument(self, **kwargs: Any) -> None:
            _BaseInstrumentor.uninstrument(self, **kwargs)
