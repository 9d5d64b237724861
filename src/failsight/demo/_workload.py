"""The demo's workload: drives the openai SDK and httpx through a plan against the fault server."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import Callable
from typing import Any

from failsight import current_generation, traced_generation
from failsight._retry import RetryPolicy
from failsight.validators import json_output, min_words, one_of

from ._plan import Step, async_plan, build_plan

SCENARIO_HEADER = "X-Failsight-Scenario"
KEY_HEADER = "X-Failsight-Key"
MESSAGES: Any = [{"role": "user", "content": "Summarize: failures are data."}]
# What plan_trip declares: the fault server's tool (`get_weather`) and output (a `city`).
_CITY: Any = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER_TOOLS: Any = [
    {"type": "function", "function": {"name": "get_weather", "parameters": _CITY}}
]
CITY_FORMAT: Any = {"name": "city", "schema": _CITY}
# Prompts that each validator accepts, for the fault server's `echo` scenario to answer with.
PASSING_PROMPTS = {
    "classify": "positive",
    "extract": '{"sentiment": "positive", "confidence": 0.92}',
    "summarize": "Failures are data: count them by class and reason, then fix the biggest one "
    "first.",
}


class Workload:
    """Runs a plan of steps against a fault server with the openai SDK and httpx."""

    # No step of the plan waits for a timeout; a generous one keeps a loaded machine (a CI
    # runner, 30 concurrent async calls) from turning slow answers into unplanned retries.
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        import httpx
        import openai

        self.base_url = base_url
        self.sync = openai.OpenAI(
            base_url=base_url, api_key="sk-demo", max_retries=2, timeout=timeout
        )
        self.async_client = openai.AsyncOpenAI(
            base_url=base_url, api_key="sk-demo", max_retries=2, timeout=timeout
        )
        self.no_retry = openai.OpenAI(
            base_url=base_url, api_key="sk-demo", max_retries=0, timeout=timeout
        )
        self.http = httpx.Client(timeout=5.0)
        self._keys = itertools.count(1)  # next() is atomic: the continuous demo uses threads
        no_sleep = RetryPolicy(max_attempts=3, sleep=lambda seconds: None)

        @traced_generation(name="classify_review", validate=[one_of("positive", "negative")])
        def classify(scenario: str, prompt: str | None = None) -> str:
            return str(self._chat(scenario, prompt=prompt).choices[0].message.content or "")

        # Retries live in the decorator here, so its client makes none of its own (two places
        # would multiply them); one key per call keeps the server's sequence across attempts.
        @traced_generation(name="extract_json", validate=[json_output()], retry=no_sleep)
        def extract(scenario: str, key: str, prompt: str | None = None) -> str:
            answer = self._chat(scenario, key=key, client=self.no_retry, prompt=prompt)
            return str(answer.choices[0].message.content or "")

        @traced_generation(name="summarize", validate=[min_words(12)])
        def summarize(scenario: str, prompt: str | None = None) -> str:
            stream = self.sync.chat.completions.create(
                model="gpt-4o-mini", messages=_messages(prompt), stream=True,
                extra_headers={SCENARIO_HEADER: scenario},
            )  # fmt: skip
            parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
            return "".join(parts)

        @traced_generation(name="safe_complete")
        def safe_complete(scenario: str) -> str:
            # A common pattern: raise on content_filter after a 200.
            choice = self._chat(scenario).choices[0]
            if choice.finish_reason == "content_filter":
                raise ValueError("Generation blocked by content filter. Rephrase the prompt.")
            return str(choice.message.content or "")

        @traced_generation(name="generate_image_safe", operation="image_generation")
        def generate_image(scenario: str) -> dict[str, Any]:
            handle = current_generation()
            if handle is not None:
                handle.set_model("dall-e-3")
            response = self.http.post(
                f"{self.base_url}/images/generations",
                json={"model": "dall-e-3", "prompt": "a lighthouse", "size": "1024x1024"},
                headers={SCENARIO_HEADER: scenario},
            )
            response.raise_for_status()
            data = response.json().get("data", [])
            if not data:
                if handle is not None:
                    handle.mark_failure("soft", "image_filtered")
                return {"url": None, "blocked": True}
            return {"url": data[0].get("url"), "blocked": False}

        @traced_generation(name="submit_and_poll_video", operation="video_generation")
        def submit_and_poll(scenario: str, max_polls: int = 6) -> str:
            handle = current_generation()
            if handle is not None:
                handle.set_model("veo3-fast")
            response = self.http.post(
                f"{self.base_url}/videos",
                files={"prompt": (None, "a calm sea"), "model": (None, "veo3-fast")},
                headers={SCENARIO_HEADER: scenario},
            )
            response.raise_for_status()
            task_id = str(response.json()["id"])
            status = "unknown"
            for _ in range(max_polls):
                poll = self.http.get(f"{self.base_url}/videos/{task_id}")
                if poll.status_code == 404:
                    continue  # task_not_exist on the first poll: the task is still starting
                poll.raise_for_status()
                status = str(poll.json().get("status", "unknown"))
                if handle is not None:
                    handle.record_video_status(status, job_id=task_id)
                if status in ("succeeded", "succeed", "completed"):
                    return task_id
                if status in ("failed", "cancelled"):
                    raise RuntimeError(f"Video task {task_id} failed")
            raise TimeoutError(f"Video task {task_id} did not finish; last status {status}")

        @traced_generation(name="plan_trip")
        def plan_trip(scenario: str) -> Any:
            # A tool or a JSON answer, whichever the scenario gives: the request declares both
            # kinds of answer it can use, and failsight judges the answer against them.
            headers = {SCENARIO_HEADER: scenario}
            if scenario.startswith("json"):
                return self.sync.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers,
                    response_format={"type": "json_schema", "json_schema": CITY_FORMAT},
                )  # fmt: skip
            return self.sync.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, tools=WEATHER_TOOLS, extra_headers=headers
            )

        self.classify = classify
        self.plan_trip = plan_trip
        self.extract = extract
        self.summarize = summarize
        self.safe_complete = safe_complete
        self.generate_image = generate_image
        self.submit_and_poll = submit_and_poll

    def _chat(
        self, scenario: str, *, key: str | None = None, client: Any = None,
        prompt: str | None = None,
    ) -> Any:  # fmt: skip
        headers = {SCENARIO_HEADER: scenario}
        if key is not None:
            headers[KEY_HEADER] = key
        return (client or self.sync).chat.completions.create(
            model="gpt-4o-mini", messages=_messages(prompt), extra_headers=headers
        )

    # Each runner takes the step's scenario; errors are the plan's, not the demo's.
    def run(self, step: Step, scenario: str) -> None:
        kind = step.name.split(":", 1)[0]
        echo = "echo" in scenario.split(",")
        prompt = PASSING_PROMPTS.get(kind) if echo else None
        try:
            if kind == "chat":
                self._chat(scenario)
            elif kind == "chat_once":
                self._chat(scenario, client=self.no_retry)
            elif kind == "stream":
                stream = self.sync.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, stream=True,
                    extra_headers={SCENARIO_HEADER: scenario},
                )  # fmt: skip
                for _ in stream:
                    pass
            elif kind == "responses":
                self.sync.responses.create(
                    model="gpt-4o-mini", input="hello", extra_headers={SCENARIO_HEADER: scenario}
                )
            elif kind == "embeddings":
                self.sync.embeddings.create(
                    model="text-embedding-3-small", input="hello",
                    extra_headers={SCENARIO_HEADER: scenario},
                )  # fmt: skip
            elif kind == "image":
                self.sync.images.generate(
                    model="dall-e-3", prompt="a cat", extra_headers={SCENARIO_HEADER: scenario}
                )
            elif kind == "video":
                self.sync.videos.create_and_poll(
                    model="sora-2", prompt="a cat", extra_headers={SCENARIO_HEADER: scenario}
                )
            elif kind == "extract":
                self.extract(scenario, f"demo-{os.getpid()}-{next(self._keys)}", prompt)
            elif kind in PASSING_PROMPTS:
                getattr(self, kind)(scenario, prompt)
            else:
                getattr(self, kind)(scenario)
        except Exception:
            pass  # the failure is what the demo shows; failsight recorded it

    async def run_async(self, scenario: str) -> None:
        with contextlib.suppress(Exception):  # the failure is what the demo shows
            await self.async_client.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, extra_headers={SCENARIO_HEADER: scenario}
            )

    def close(self) -> None:
        self.http.close()
        self.sync.close()
        self.no_retry.close()


def _messages(prompt: str | None) -> Any:
    return MESSAGES if prompt is None else [{"role": "user", "content": prompt}]


def run_workload(
    base_url: str,
    rounds: int,
    async_count: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[Step, str]]:
    """Run the plan; returns the plan that ran."""
    plan = build_plan(rounds)
    total = len(plan) + async_count
    workload = Workload(base_url)
    try:
        for done, (step, scenario) in enumerate(plan, 1):
            workload.run(step, scenario)
            if progress is not None:
                progress(done, total)
        extra = async_plan(async_count)

        async def run_all() -> None:
            await asyncio.gather(*(workload.run_async(s) for _, s in extra))

        if extra:
            asyncio.run(run_all())
        if progress is not None:
            progress(total, total)
        return plan + extra
    finally:
        workload.close()
