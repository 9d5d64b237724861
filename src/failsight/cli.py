"""The `failsight` command: `demo`, `run`, `assets`, `doctor` and `slo`.

Bad input (an unknown option, a busy port, a program that does not exist) is one line on
stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from failsight._version import __version__
from failsight.slo._cli import add_slo_command, run_slo

if TYPE_CHECKING:
    from failsight import doctor as doctor_types

__all__ = ["main"]

BOOTSTRAP_DIR = Path(__file__).parent / "_bootstrap"
PORT_ENV = "FAILSIGHT_METRICS_PORT"
ADDR_ENV = "FAILSIGHT_METRICS_ADDR"


class UsageError(Exception):
    """A one-line error for the user, exit status attached."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {port}")
    return port


def _addr(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError(
            "empty address; give a host, e.g. 127.0.0.1 (loopback) or 0.0.0.0 (every interface)"
        )
    return value


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {number}")
    return number


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not (math.isfinite(number) and number > 0):  # nan never ends a wait; 0 spins
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds above 0: {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="failsight", description="Why AI generations fail: metrics and spans.")
    parser.add_argument("--version", action="version", version=f"failsight {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    _add_demo(commands)

    run = commands.add_parser(
        "run",
        help="run a program with the openai patch applied and /metrics served",
        usage="failsight run [--port N] [--addr A] -- program [args...]",
    )
    run.add_argument("--port", type=_port, default=9464, help="/metrics port (default 9464)")
    run.add_argument(
        "--addr", type=_addr, default="127.0.0.1", help="/metrics address (default loopback)"
    )
    run.add_argument("program", nargs=argparse.REMAINDER, help="the program and its arguments")

    assets = commands.add_parser(
        "assets",
        help="write the Grafana dashboards, Prometheus rules and collector/compose config",
        description=(
            "Write the files that ship with failsight into DIR, in the repository's layout: "
            "dashboards/ (Grafana dashboards and provisioning), dashboards/rules/ (Prometheus "
            "alert and recording rules, and their promtool unit tests), deploy/ (a "
            "docker-compose stack) and otel-collector.yaml."
        ),
    )
    assets.add_argument("directory", metavar="DIR", type=Path, help="where to write them")
    assets.add_argument(
        "--namespace",
        default="genai",
        help="the metric namespace given to failsight.configure(namespace=...): rewrites the "
        "genai_ prefix of every metric (and genai: of the recording rules) (default genai)",
    )
    assets.add_argument(
        "--force", action="store_true", help="overwrite files that exist and differ"
    )
    _add_doctor(commands)
    add_slo_command(commands)
    return parser


def _add_demo(commands: argparse._SubParsersAction[_Parser]) -> None:
    from failsight.demo._options import add_workload_options

    demo = commands.add_parser(
        "demo",
        help="run a workload against the bundled fault-injection server",
        description="Run the openai SDK against the bundled fault-injection server, serve "
        "/metrics and print what failsight recorded: a finite run of a few seconds, or steady "
        "traffic with incidents (--forever, --duration) for Prometheus and Grafana.",
    )
    demo.add_argument("--port", type=_port, default=9464, help="/metrics port (default 9464)")
    demo.add_argument(
        "--addr", type=_addr, default="127.0.0.1", help="/metrics address (default loopback)"
    )
    demo.add_argument(
        "--keep-serving", action="store_true", help="keep /metrics up after the run (Ctrl-C)"
    )
    demo.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (drawn only on a terminal), no status line each minute",
    )
    add_workload_options(demo, _positive)


def _add_doctor(commands: argparse._SubParsersAction[_Parser]) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="run the debugging checklist live against an OpenAI-compatible endpoint",
        description=(
            "Check the key, base URL, model list, a minimal chat call, rate-limit headers and "
            "a length cut (and one image and one video job when their models are given), "
            "within one deadline for the whole run. Exit status: 0 all ok; 1 warnings only; "
            "2 any failure (a request past its deadline too) or bad usage; 3 the doctor itself "
            "broke (a bug: treat it as a failure and report it); 130 interrupted."
        ),
    )
    doctor.add_argument("--base-url", help="default: $OPENAI_BASE_URL or api.openai.com/v1")
    doctor.add_argument("--model", default="gpt-4o-mini", help="chat model (default gpt-4o-mini)")
    doctor.add_argument("--image-model", help="also generate one image with this model")
    doctor.add_argument("--video-model", help="also create one video job with this model")
    doctor.add_argument(
        "--video-wait",
        type=_seconds,
        default=120.0,
        help="seconds to poll a video job (default 120)",
    )
    doctor.add_argument(
        "--deadline",
        type=_seconds,
        metavar="SECONDS",
        help="bound on the whole run, stated on the screen; a request still going then is a "
        "failure (default 60, plus --video-wait when a video job is polled)",
    )
    doctor.add_argument(
        "--only", default="text,image,video", help="check groups: text,image,video (default all)"
    )
    doctor.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        metavar="NAME",
        help="environment variable holding the key (default OPENAI_API_KEY)",
    )
    doctor.add_argument(
        "--api-key-header",
        metavar="NAME",
        help="header the key goes in (default: api-key on Azure OpenAI hosts, else "
        "Authorization: Bearer)",
    )
    doctor.add_argument(
        "--validate",
        metavar="CHECK",
        help="also check the output of --prompt with your app's rule: nonempty, json, "
        "oneof:A,B,... or minwords:N",
    )
    doctor.add_argument("--prompt", help="the prompt whose output --validate checks")
    doctor.add_argument("--json", action="store_true", help="one JSON document on stdout")
    doctor.add_argument("--yes", action="store_true", help="send without asking (costs a little)")
    doctor.add_argument(
        "--against-fault-server",
        action="store_true",
        help="check the bundled fault-injection server on loopback: no key, no cost",
    )


def _check_port_free(addr: str, port: int) -> None:
    """Fail early, as the server would: the child program binds only after exec."""
    from failsight.exposition import _check_bindable

    try:
        _check_bindable(port, addr)
    except OSError as exc:
        raise UsageError(str(exc.strerror if exc.errno is not None else exc)) from None


def _demo(args: argparse.Namespace) -> int:
    try:
        import aiohttp  # noqa: F401
        import openai  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            f"the demo needs 'pip install failsight[demo]' ({exc.name} missing)"
        ) from None
    from failsight.demo import run_demo
    from failsight.demo._options import workload_settings

    try:
        workload = workload_settings(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    # No probe: run_demo binds first and reports a taken port itself (exit status 2).
    return run_demo(
        port=args.port,
        addr=args.addr,
        keep_serving=args.keep_serving,
        progress=not args.no_progress,
        **workload,
    )


def _run(args: argparse.Namespace) -> int:
    program = list(args.program)
    if program and program[0] == "--":
        program = program[1:]
    if not program:
        raise UsageError("no program given: failsight run -- python app.py")
    executable = shutil.which(program[0])
    if executable is None:
        raise UsageError(f"program not found: {program[0]}", status=127)
    _check_port_free(args.addr, args.port)
    env = dict(os.environ)
    # Python programs import our sitecustomize first: patch applied, /metrics served.
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(BOOTSTRAP_DIR), env.get("PYTHONPATH", "")) if part
    )
    env[PORT_ENV] = str(args.port)
    env[ADDR_ENV] = args.addr
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(executable, program, env)  # the exit code is the program's own
    return 0  # pragma: no cover - execve does not return


def _assets(args: argparse.Namespace) -> int:
    from failsight._assets import ChangedFilesError, write_assets

    directory: Path = args.directory
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"not a directory: {directory}", status=1)
    try:
        written = write_assets(directory, args.namespace, overwrite=args.force)
    except ValueError as exc:
        raise UsageError(f"--namespace: {exc}") from None
    except ChangedFilesError as exc:
        raise UsageError(str(exc), status=1) from None
    except OSError as exc:
        raise UsageError(f"cannot write {exc.filename or directory}: {exc.strerror}", 1) from None
    for path in written:
        print(path)
    rules = directory / "dashboards" / "rules"
    print(
        f"\nWrote {len(written)} files. Next:\n"
        f"  promtool check rules {rules}/failsight-*.yml\n"
        f"  promtool test rules {rules}/tests/*.yml\n"
        f"  docker compose -f {directory / 'deploy' / 'docker-compose.yml'} up"
    )
    return 0


def _doctor(args: argparse.Namespace) -> int:
    """The doctor, whose exit status a deploy gate reads: a bug in it is never a traceback
    (which would exit 1, read as "warnings only") but one line and exit status 3."""
    try:
        return _doctor_checks(args)
    except (UsageError, BrokenPipeError):  # main() says these in its own way
        raise
    except Exception as exc:
        # Type and place only: the message could hold what the server sent.
        frame = exc.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        where = f" in {frame.tb_frame.f_code.co_name}" if frame is not None else ""
        print(
            f"failsight: error: the doctor broke ({type(exc).__name__}{where}): exit status 3; "
            "please report it",
            file=sys.stderr,
        )
        return 3


def _doctor_checks(args: argparse.Namespace) -> int:
    try:
        import httpx  # noqa: F401
    except ImportError:
        raise UsageError("the doctor needs httpx: pip install 'failsight[testing]'") from None
    from failsight import doctor

    only = tuple(part.strip() for part in args.only.split(",") if part.strip())
    unknown = sorted(set(only) - set(doctor.GROUPS))
    if unknown or not only:
        raise UsageError(f"--only: unknown group(s) {', '.join(unknown)}; use text,image,video")
    if args.against_fault_server:
        return _doctor_fault_server(args, only)
    base_url = args.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    config = doctor.DoctorConfig(
        base_url=base_url,
        api_key=os.environ.get(args.api_key_env),
        api_key_env=args.api_key_env,
        model=args.model,
        image_model=args.image_model,
        video_model=args.video_model,
        only=only,
        video_wait_s=args.video_wait,
        deadline_s=args.deadline,
        **_doctor_options(args),
    )
    doctor.protect(config.api_key)
    if config.api_key is not None and config.api_key.strip() and not args.yes:
        _confirm(f"failsight doctor will send: {doctor.cost_estimate(config)}.")
    return _doctor_report(config, args.json)


def _doctor_options(args: argparse.Namespace) -> dict[str, Any]:
    """--api-key-header, --validate and --prompt, checked before anything is sent."""
    from failsight import doctor

    options: dict[str, Any] = {"api_key_header": args.api_key_header}
    if args.prompt is not None and args.validate is None:
        raise UsageError("--prompt goes with --validate")
    if args.validate is not None:
        try:
            doctor.parse_validator(args.validate)
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        options["validate"] = args.validate
        if args.prompt is not None:
            options["prompt"] = args.prompt
    return options


def _confirm(what: str) -> None:
    print(what, file=sys.stderr)
    if not sys.stdin.isatty():
        raise UsageError("not a terminal: pass --yes to send these requests", status=2)
    answer = input("Send them? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UsageError("nothing sent", status=2)


def _doctor_report(config: doctor_types.DoctorConfig, as_json: bool) -> int:
    from failsight import doctor

    report = doctor.run_doctor(config)
    render = doctor.render_json if as_json else doctor.render_text
    text = render(report.checks, config.base_url, report.classes, report.series,
                  deadline_s=report.deadline_s)  # fmt: skip
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    print(text.encode(encoding, "backslashreplace").decode(encoding))  # any terminal's charset
    return doctor.exit_status(report.checks)


def _doctor_fault_server(args: argparse.Namespace, only: tuple[str, ...]) -> int:
    try:
        from failsight.testing import SCENARIO_HEADER, FaultServer
    except ImportError as exc:
        raise UsageError(
            f"the fault server needs 'pip install failsight[testing]' ({exc})"
        ) from None
    from failsight import doctor

    with FaultServer(video_polls_to_finish=2) as server:
        config = doctor.DoctorConfig(
            base_url=server.base_url,
            api_key="sk-failsight-fault-server-0000",
            api_key_env="(fault server key)",
            model=args.model,
            image_model=args.image_model or "dall-e-3",
            video_model=args.video_model or "sora-2",
            only=only,
            video_wait_s=min(args.video_wait, 10.0),
            video_interval_s=0.05,
            deadline_s=args.deadline,
            # The server ignores max_tokens; ask it for the cut a real endpoint makes.
            headers={"chat_tiny": {SCENARIO_HEADER: "length"}},
            **_doctor_options(args),
        )
        doctor.protect(config.api_key)
        return _doctor_report(config, args.json)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `failsight` command; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "demo":
            return _demo(args)
        if args.command == "assets":
            return _assets(args)
        if args.command == "doctor":
            return _doctor(args)
        if args.command == "slo":
            return run_slo(args)
        return _run(args)
    except UsageError as exc:
        print(f"failsight: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `failsight demo | head`: the reader left; nothing more to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's own flush at exit is quiet
        return 141  # 128 + SIGPIPE, as a shell reports a writer the pipe stopped


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
