"""An OpenAI-compatible fault-injection server for tests and demos.

``FaultServer`` answers the OpenAI HTTP API on loopback and fails on request: HTTP
errors, timeouts, dropped connections, undecodable bodies, soft failures such as
``finish_reason="content_filter"``, empty image results and video jobs that fail or
never finish, tool calls and structured output that break what the request declared
(``DECLARED_SCENARIOS``: arguments that are not JSON, an undeclared tool, ...);
``PARAMETERISED`` scenarios send any HTTP status, finish reason or filter category a test
names (``gpt-4o-mini@finish=end_turn``). It imports nothing else from failsight, so it can
check the rest of it.

Example::

    from failsight.testing import FaultServer

    with FaultServer() as server:
        ...  # point openai.OpenAI(base_url=server.base_url, ...) at it
"""

try:
    import aiohttp  # noqa: F401  # the server runs on it
except ImportError as _exc:
    raise ImportError(
        f"failsight.testing needs aiohttp ({_exc}): pip install 'failsight[testing]'",
        name=_exc.name,
    ) from None

from ._mock import completion_body, mock_openai_client, stream_body
from ._payloads import OK_TEXT, REFUSAL_TEXT, TRUNCATED_TEXT
from ._ratelimits import RATELIMIT_HEADER_SCENARIOS, RateLimit
from ._scenarios import (
    DECLARED_SCENARIOS,
    HARD_SCENARIOS,
    HTTP_ERROR_SCENARIOS,
    IMAGE_SCENARIOS,
    PARAMETERISED,
    RATELIMIT_SCENARIOS,
    SCENARIOS,
    TEXT_SCENARIOS,
    USAGE,
    VIDEO_SCENARIOS,
    HttpError,
    parse_mix,
)
from ._server import (
    KEY_HEADER,
    MODELS,
    POLL_AFTER_HEADER,
    SCENARIO_HEADER,
    FaultServer,
    RecordedRequest,
)

__all__ = [
    "DECLARED_SCENARIOS",
    "HARD_SCENARIOS",
    "HTTP_ERROR_SCENARIOS",
    "IMAGE_SCENARIOS",
    "KEY_HEADER",
    "MODELS",
    "OK_TEXT",
    "PARAMETERISED",
    "POLL_AFTER_HEADER",
    "RATELIMIT_HEADER_SCENARIOS",
    "RATELIMIT_SCENARIOS",
    "REFUSAL_TEXT",
    "SCENARIOS",
    "SCENARIO_HEADER",
    "TEXT_SCENARIOS",
    "TRUNCATED_TEXT",
    "USAGE",
    "VIDEO_SCENARIOS",
    "FaultServer",
    "HttpError",
    "RateLimit",
    "RecordedRequest",
    "completion_body",
    "mock_openai_client",
    "parse_mix",
    "stream_body",
]
