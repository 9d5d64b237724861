"""Run the fault-injection server in the foreground.

python -m failsight.testing --port 8000 --mix ok=0.7,content_filter=0.1,http_429=0.2 --seed 1
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Sequence

from ._scenarios import SCENARIOS, parse_mix
from ._server import FaultServer


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, serve until Ctrl-C, return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m failsight.testing",
        description="OpenAI-compatible fault-injection server on loopback.",
        epilog=f"Scenarios: {', '.join(sorted(SCENARIOS))}",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--mix", type=parse_mix, help="weights, e.g. ok=0.7,content_filter=0.1")
    parser.add_argument("--seed", type=int, help="seed for --mix, for reproducible runs")
    parser.add_argument("--default-scenario", default="ok", choices=sorted(SCENARIOS))
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    parser.add_argument("--retry-after-ms", type=int)
    parser.add_argument("--video-polls-to-finish", type=int, default=2)
    parser.add_argument("--poll-after-ms", type=int, default=1000)
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        server = FaultServer(
            args.host,
            args.port,
            default_scenario=args.default_scenario,
            mix=args.mix,
            seed=args.seed,
            slow_seconds=args.slow_seconds,
            retry_after_ms=args.retry_after_ms,
            video_polls_to_finish=args.video_polls_to_finish,
            poll_after_ms=args.poll_after_ms,
            access_log=not args.quiet,
        )
        server.start()
    except (ValueError, OSError) as exc:
        parser.exit(2, f"error: {exc}\n")
    try:
        print(f"failsight fault server on {server.base_url} (Ctrl-C to stop)", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
