"""failsight: why AI generations fail — hard, soft and silent — as metrics and spans.

>>> import failsight
>>> @failsight.traced_generation(name="summarize")
... def summarize(text: str) -> str:
...     return text[:10]
"""

from failsight import validators
from failsight._classify import classify_exception, classify_result
from failsight._config import Settings, configure
from failsight._guard import FailsightWarning
from failsight._handle import Generation, current_generation
from failsight._http_patch import instrument_http, uninstrument_http
from failsight._multiprocess import mark_process_dead
from failsight._retry import RetryPolicy
from failsight._scope import traced_generation
from failsight._sdk_patch import instrument_openai, uninstrument_openai
from failsight._taxonomy import Outcome, Usage
from failsight._version import __version__
from failsight.exposition import make_asgi_app, make_wsgi_app, start_metrics_server

__all__ = [
    "FailsightWarning",
    "Generation",
    "Outcome",
    "RetryPolicy",
    "Settings",
    "Usage",
    "__version__",
    "classify_exception",
    "classify_result",
    "configure",
    "current_generation",
    "instrument_http",
    "instrument_openai",
    "make_asgi_app",
    "make_wsgi_app",
    "mark_process_dead",
    "start_metrics_server",
    "traced_generation",
    "uninstrument_http",
    "uninstrument_openai",
    "validators",
]
