"""Image and video checks: empty `data`, url vs b64, parameter pitfalls; video job polling."""

from __future__ import annotations

import calendar
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlsplit

from ._model import Check, fail, ok, skip, warn
from ._probe import Prober, Reply, error_fields
from ._secret import shown
from ._text import no_answer, not_json, status_fix

__all__ = [
    "IMAGE_PROMPT",
    "VIDEO_PROMPT",
    "VideoRun",
    "image_payload",
    "judge_image",
    "judge_image_params",
    "judge_video_job",
    "judge_video_statuses",
    "run_video",
]

IMAGE_PROMPT = "A red apple on a white table, simple illustration"
VIDEO_PROMPT = "A red apple rolling slowly across a white table"
SUCCESS = ("completed", "succeeded", "succeed")
FAILED = ("failed", "cancelled", "canceled", "error")
MIN_POLL_S: Final = 0.5  # a server's `openai-poll-after-ms` cannot make the doctor poll faster
_MAX_ID: Final = 200  # characters of a job id the doctor puts in a URL

# Documented parameter pitfalls per model family: (prefix, what to know).
_IMAGE_PITFALLS: tuple[tuple[str, str], ...] = (
    (
        "gpt-image",
        "gpt-image-*: no response_format (always b64_json); use output_format png|jpeg|webp",
    ),
    ("dall-e-3", "dall-e-3: n must be 1; the prompt is rewritten (revised_prompt)"),
    ("dall-e-2", "dall-e-2: no quality/style; sizes 256x256, 512x512, 1024x1024 only"),
    ("flux", "flux via gateways: often no n > 1 and no response_format; check the gateway"),
)


def _family_note(model: str) -> str | None:
    return next((note for prefix, note in _IMAGE_PITFALLS if model.startswith(prefix)), None)


def image_payload(model: str) -> dict[str, Any]:
    """One image, in the parameters the model family accepts."""
    payload: dict[str, Any] = {"model": model, "prompt": IMAGE_PROMPT, "n": 1}
    payload["size"] = "256x256" if model.startswith("dall-e-2") else "1024x1024"
    return payload


def judge_image(reply: Reply | None, why_not: str = "not run (give --image-model)") -> Check:
    """One generation: is `data` empty (filtered), url or b64, revised_prompt present."""
    cid = "image.generate"
    group = "image"
    if reply is None:
        return skip(cid, group, why_not)
    if reply.error_kind is not None:
        return no_answer(cid, group, "POST /images/generations", reply)
    if not reply.ok:
        code, message = error_fields(reply)
        hint = status_fix(reply)
        if "response_format" in message:
            hint = "drop response_format; this model takes output_format"
        elif "'n'" in message or " n " in f" {message} ":
            hint = "send n=1 and loop for more images"
        return fail(cid, group, f"HTTP {reply.status} {code}: {message}", hint)
    if (odd := not_json(cid, group, "POST /images/generations", reply)) is not None:
        return odd
    data = reply.json_dict().get("data")
    if not isinstance(data, list) or not data:
        return fail(
            cid,
            group,
            "HTTP 200 but `data` is empty: the prompt was filtered "
            "(failsight: soft/image_filtered)",
            "check `data` before data[0]; report a filtered result, rephrase, do not retry as is",
            data_len=0,
        )
    item = data[0] if isinstance(data[0], dict) else {}
    revised = "revised_prompt present" if item.get("revised_prompt") else "no revised_prompt"
    if item.get("b64_json"):
        return ok(cid, group, f"1 image as b64_json, {revised}", "", form="b64_json")
    if item.get("url"):
        expiry = url_expiry(str(item["url"]))
        lasts = f"expires {expiry}" if expiry else "no expiry written in it"
        return ok(
            cid,
            group,
            f"1 image as a URL ({lasts}), {revised}",
            "URLs expire (OpenAI: 1 hour): download the image at once, never store the URL",
            form="url",
            expires=expiry,
        )
    return warn(
        cid, group, "data[0] has neither url nor b64_json", "log the raw response", form="none"
    )


def url_expiry(url: str, now: float | None = None) -> str | None:
    """When a signed URL stops working, from its query: Azure SAS `se=` (OpenAI's image URLs),
    S3 `X-Amz-Date` + `X-Amz-Expires`, GCS `X-Goog-Date` + `X-Goog-Expires`, CloudFront
    `Expires=` (epoch seconds). None when the URL says nothing."""
    query = {key.lower(): value for key, value in parse_qsl(urlsplit(url).query)}
    now = time.time() if now is None else now
    at: float | None = None
    try:
        if "se" in query:
            at = calendar.timegm(time.strptime(query["se"][:19], "%Y-%m-%dT%H:%M:%S"))
        for prefix in ("x-amz-", "x-goog-"):
            if f"{prefix}expires" in query and f"{prefix}date" in query:
                signed = calendar.timegm(time.strptime(query[f"{prefix}date"], "%Y%m%dT%H%M%SZ"))
                at = signed + int(query[f"{prefix}expires"])
        if at is None and "expires" in query:
            at = float(query["expires"])
        if at is None or not math.isfinite(at):  # "Expires=nan" is the server's to send
            return None
        minutes = round((at - now) / 60)
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))
    except (ValueError, OverflowError, OSError):  # past what the platform's time_t holds
        return None
    return f"at {when}, in {minutes} min" if minutes >= 0 else f"at {when}, already passed"


def judge_image_params(model: str | None) -> Check:
    """The documented parameter pitfalls for a known model family."""
    cid = "image.params"
    if model is None:
        return skip(cid, "image", "not run (give --image-model)")
    note = _family_note(model)
    if note is None:
        return ok(
            cid,
            "image",
            f"no documented pitfalls known for {model}",
            "send n=1 and no response_format unless the provider documents them",
        )
    return ok(cid, "image", note, "keep these parameters out of requests to this model")


@dataclass
class VideoRun:
    """A create call and its polls, bounded by a wait."""

    create: Reply
    polls: list[Reply] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    first_poll_missing: bool = False
    last_body: dict[str, Any] = field(default_factory=dict)
    waited_s: float = 0.0
    timed_out: bool = False
    cut_by_deadline: bool = False  # the run's deadline, not --video-wait, ended the wait
    no_id: bool = False  # the create answer had no job id the doctor could poll


def _pause(hint: str | None, interval_s: float) -> float:
    """`interval_s`, or the server's shorter hint (in ms), but never below `MIN_POLL_S`."""
    if hint is None or not hint.strip().isascii() or not hint.strip().isdigit():
        return interval_s
    return min(interval_s, max(MIN_POLL_S, int(hint.strip()[:9]) / 1000))


def run_video(
    prober: Prober,
    model: str,
    *,
    wait_s: float,
    interval_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> VideoRun:
    """Create one job and poll it until it ends, `wait_s` passes or the run's deadline does.

    A server's `openai-poll-after-ms` may shorten `interval_s`, to `MIN_POLL_S` at least."""
    for name, value in (("wait_s", wait_s), ("interval_s", interval_s)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"run_video: {name} must be a positive number of seconds: {value}")
    create = prober.request(
        "video_create", "POST", "/videos", {"model": model, "prompt": VIDEO_PROMPT, "seconds": "4"}
    )
    run = VideoRun(create)
    body = create.json_dict()
    video_id = body.get("id") or body.get("task_id")
    if not create.ok:
        return run
    if not isinstance(video_id, str) or not 0 < len(video_id) <= _MAX_ID:
        run.no_id = True
        return run
    run.last_body = body
    _note(run, body)
    started = time.monotonic()
    requested = wait_s
    # The wait ends at --video-wait or shortly before the run's deadline, whichever is first.
    wait_s = min(wait_s, max(0.0, prober.left() - MIN_POLL_S))
    run.cut_by_deadline = wait_s < requested
    pause = _pause(create.headers.get("openai-poll-after-ms"), interval_s)
    path = f"/videos/{quote(video_id, safe='')}"  # the server's id, kept to one path segment
    while not _ended(run):
        if time.monotonic() - started >= wait_s:
            run.timed_out = True
            break
        sleep(max(0.0, min(pause, wait_s - (time.monotonic() - started))))
        reply = prober.request("video_poll", "GET", path)
        run.polls.append(reply)
        if reply.status == 404 and len(run.polls) == 1 and "task_not_exist" in reply.text:
            run.first_poll_missing = True
            continue
        if not reply.ok:
            break
        run.last_body = reply.json_dict()
        _note(run, run.last_body)
    run.waited_s = time.monotonic() - started
    return run


def _status(body: dict[str, Any]) -> str:
    return shown(body.get("status") or body.get("task_status") or "", 40).lower()


def _note(run: VideoRun, body: dict[str, Any]) -> None:
    status = _status(body)
    if status and (not run.statuses or run.statuses[-1] != status) and len(run.statuses) < 20:
        run.statuses.append(status)


def _ended(run: VideoRun) -> bool:
    status = _status(run.last_body)
    return status in SUCCESS or status in FAILED


def judge_video_job(run: VideoRun | None, why_not: str = "not run (give --video-model)") -> Check:
    """How the job ended: success, failed (with or without `error`), or stuck."""
    cid = "video.job"
    group = "video"
    if run is None:
        return skip(cid, group, why_not)
    create = run.create
    if create.error_kind is not None:
        return no_answer(cid, group, "POST /videos", create)
    if not create.ok:
        code, message = error_fields(create)
        return fail(
            cid, group, f"create: HTTP {create.status} {code}: {message}", status_fix(create)
        )
    if (odd := not_json(cid, group, "POST /videos", create)) is not None:
        return odd
    if run.no_id:
        return fail(
            cid,
            group,
            f"create: HTTP {create.status} without a job id to poll (id or task_id, a string "
            f"of at most {_MAX_ID} characters)",
            "log the create answer: this provider names its job id differently",
        )
    last_poll = run.polls[-1] if run.polls else None
    if last_poll is not None and last_poll.error_kind is not None:
        return no_answer(cid, group, "GET /videos/{id}", last_poll)
    if last_poll is not None and not last_poll.ok and not run.first_poll_missing:
        code, message = error_fields(last_poll)
        return fail(
            cid, group, f"poll: HTTP {last_poll.status} {code}: {message}", status_fix(last_poll)
        )
    status = _status(run.last_body)
    details: dict[str, Any] = {
        "statuses": run.statuses,
        "polls": len(run.polls),
        "waited_s": round(run.waited_s, 2),
    }
    if status in SUCCESS:
        return ok(cid, group, f"job ended '{status}' after {len(run.polls)} polls", **details)
    if status in FAILED:
        error = run.last_body.get("error") or run.last_body.get("fail_reason")
        if error:
            text = error.get("message") if isinstance(error, dict) else error
            return fail(
                cid,
                group,
                f"job {status}: error says {str(text)[:120]!r}",
                "read the job's `error` field and show it; resubmit only if it is transient",
                **details,
            )
        return fail(
            cid,
            group,
            f"job {status} and carries no `error`: the cause is not in the response",
            "log the whole job body and the provider's task id; ask the provider",
            **details,
        )
    if run.timed_out and status == "queued":
        return fail(
            cid,
            group,
            f"job stuck in 'queued' for {run.waited_s:.0f} s of a bounded wait",
            "bound every wait and cancel/resubmit (failsight: soft/video_timeout); "
            "check the provider's queue",
            **details,
        )
    if run.timed_out and run.cut_by_deadline:
        return fail(
            cid,
            group,
            f"job still '{status}' when the doctor's deadline ended the wait after "
            f"{run.waited_s:.0f} s",
            "raise --deadline (the whole run's bound), or --video-wait with it",
            **details,
        )
    if run.timed_out:
        return warn(
            cid,
            group,
            f"job still '{status}' after {run.waited_s:.0f} s",
            "raise --video-wait; video jobs often take minutes",
            **details,
        )
    return warn(cid, group, f"unknown job status {status!r}", "log the job body", **details)


def judge_video_statuses(
    run: VideoRun | None, why_not: str = "not run (give --video-model)"
) -> Check:
    """The spelling of the statuses seen, and a first-poll `task_not_exist`."""
    cid = "video.statuses"
    group = "video"
    if run is None:
        return skip(cid, group, why_not)
    if not run.statuses:
        return skip(cid, group, "no status seen")
    seen = shown(" -> ".join(run.statuses), 300)
    accept = "accept completed, succeeded (Veo, Runway) and succeed (Kling)"
    if run.first_poll_missing:
        return warn(
            cid,
            group,
            f"first poll answered 404 task_not_exist, then {seen}",
            "treat task_not_exist on early polls as 'not registered yet' and poll again",
            statuses=run.statuses,
        )
    spelled = next((s for s in run.statuses if s in SUCCESS), None)
    if spelled is not None and spelled != "completed":
        return ok(
            cid,
            group,
            f"statuses {seen}: success is spelled '{spelled}' here",
            accept,
            statuses=run.statuses,
        )
    return ok(cid, group, f"statuses {seen}", accept, statuses=run.statuses)
