"""The OpenTelemetry instrumentor for `opentelemetry-instrument python app.py`.

Registered under the `opentelemetry_instrumentor` entry point group. When the
`opentelemetry-instrumentation` package is installed it is a `BaseInstrumentor`;
without it, a class with the same `instrument()`/`uninstrument()` surface.

>>> from failsight.instrumentation import FailsightOpenAIInstrumentor
>>> FailsightOpenAIInstrumentor().instrumentation_dependencies()
('openai >= 1.0',)
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from failsight._sdk_patch import instrument_openai, uninstrument_openai

__all__ = ["FailsightOpenAIInstrumentor"]

_DEPENDENCIES = ("openai >= 1.0",)


class _Instrumentor:
    """instrument()/uninstrument() with OpenTelemetry's keyword conventions."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _DEPENDENCIES

    def instrument(self, **kwargs: Any) -> None:
        self._instrument(**kwargs)

    def uninstrument(self, **kwargs: Any) -> None:
        self._uninstrument(**kwargs)

    def _instrument(self, **kwargs: Any) -> None:
        providers = {
            key: kwargs[key] for key in ("tracer_provider", "meter_provider") if key in kwargs
        }
        if providers:
            from failsight._config import configure, get_state

            settings = get_state().settings
            configure(
                registry=settings.registry,
                tracer_provider=providers.get("tracer_provider", settings.tracer_provider),
                meter_provider=providers.get("meter_provider", settings.meter_provider),
                namespace=settings.namespace,
                capture_content=settings.capture_content,
                max_content_length=settings.max_content_length,
                max_label_values=settings.max_label_values,
                max_series=settings.max_series,
                video_job_timeout=settings.video_job_timeout,
                max_open_video_jobs=settings.max_open_video_jobs,
            )
        instrument_openai()

    def _uninstrument(self, **kwargs: Any) -> None:
        uninstrument_openai()


try:
    from opentelemetry.instrumentation.instrumentor import (  # type: ignore[import-not-found]
        BaseInstrumentor,
    )
except ImportError:  # the contrib package is optional

    class FailsightOpenAIInstrumentor(_Instrumentor):
        """Patches the openai SDK; see `failsight.instrument_openai`."""

else:

    class FailsightOpenAIInstrumentor(_Instrumentor, BaseInstrumentor):  # type: ignore[no-redef,misc]
        """Patches the openai SDK; see `failsight.instrument_openai`."""

        def instrument(self, **kwargs: Any) -> None:
            BaseInstrumentor.instrument(self, **kwargs)

        def uninstrument(self, **kwargs: Any) -> None:
            BaseInstrumentor.uninstrument(self, **kwargs)
