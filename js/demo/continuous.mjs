// The continuous demo (npm run demo -- --forever / --duration): a steady, jittered stream of the
// conformance cases' calls with incidents on a schedule, as `failsight demo --forever` in Python
// (src/failsight/demo/_schedule.py, _continuous.py). Pure tables and a loop; demo.mjs wires it up.
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import OpenAI from "openai";
import { RetryPolicy, tracedGeneration } from "../dist/index.js";
import { DECLARED_SHAPES, makeValidators, perform } from "../test/cases.mjs";

const SCENARIO_HEADER = "X-Failsight-Scenario";
const FAIL_SHARE = 0.0025; // of its group, per failing case: 18 hard cases at unscoped chat make 4.5%
const RETRY_SHARE = 0.02; // of its group, per healthy case that retries on the way
// Of its group, for all its failing declared-output cases together (tools, structured output):
// they are many (each tool-call outcome per shape), and a share each would put the silent ratio
// and the tool-call failure ratio past half their thresholds.
const DECLARED_SHARE = 0.01;
// Unscoped gpt-4o-mini chat carries most cases (chat, streams, responses): a larger slice.
const GROUP_WEIGHT = { "unscoped|chat|gpt-4o-mini": 4 };
const WORKERS = 8; // requests under way at once, at most; the pace waits for a free one

/**
 * A case as the demo sends it: the scenario moves from `model@scenario` to the
 * X-Failsight-Scenario header, so the model label is the plain model name and each call site
 * and model is one series (the alerts' unit) mixing healthy and failing requests.
 *
 * @example demoCall({ shape: "chat", model: "gpt-4o-mini@content_filter" })
 *   // { call: { shape: "chat", model: "gpt-4o-mini" }, scenario: "content_filter" }
 */
export function demoCall(call) {
  const at = call.model.indexOf("@");
  if (at < 0) return { call, scenario: undefined };
  return { call: { ...call, model: call.model.slice(0, at) }, scenario: call.model.slice(at + 1) };
}

const groupOf = (c) => `${c.labels.call_site}|${c.labels.operation}|${demoCall(c.call).call.model}`;
const healthy = (c) => c.expect.failure_class === "none";
const retries = (c) => Object.values(c.expect.retries ?? {}).reduce((a, b) => a + b, 0);
const declaredFailure = (c) => !healthy(c) && DECLARED_SHAPES.has(c.call.shape);

/** The call site's plain call: its first case answered `ok` (`video_ok`), validators dropped. */
function plainCase(c) {
  const scenario = c.labels.operation === "video_generation" ? "video_ok" : "ok";
  const scope = c.scope && { ...c.scope, validate: undefined };
  const model = `${demoCall(c.call).call.model}@${scenario}`;
  return { ...c, id: `${c.scope?.name ?? c.labels.call_site}_plain`, scope, call: { ...c.call, model },
    expect: { failure_class: "none" } };
}

/**
 * The steady mix: [{ weight, case, group }] over every case of `spec.cases`. Within a group (call
 * site, operation, model) each failing case gets FAIL_SHARE (the failing declared-output cases
 * share DECLARED_SHARE), each healthy case with retries RETRY_SHARE and the plain healthy cases
 * the rest (a derived plain case where a group has none), so every alert ratio stays under half
 * its threshold of dashboards/rules/failsight-alerts.yml.
 *
 * @example steadyMix(spec.cases).find((e) => e.case.id === "chat_ok").weight  // ~0.54
 */
export function steadyMix(cases) {
  const groups = new Map();
  for (const c of cases) {
    const key = groupOf(c);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(c);
  }
  const mix = [];
  for (const [group, members] of groups) {
    const all = members.some((c) => healthy(c) && !retries(c)) ? members : [...members, plainCase(members[0])];
    const plain = all.filter((c) => healthy(c) && !retries(c));
    const declared = all.filter(declaredFailure).length;
    const shareOf = (c) => (declaredFailure(c) ? DECLARED_SHARE / declared : !healthy(c) ? FAIL_SHARE : retries(c) ? RETRY_SHARE : 0);
    const rest = 1 - all.reduce((sum, c) => sum + shareOf(c), 0);
    const weight = GROUP_WEIGHT[group] ?? 1;
    for (const c of all) mix.push({ weight: weight * (shareOf(c) || rest / plain.length), case: c, group });
  }
  return mix;
}

/**
 * Incidents, each at one call site and model in turn (the group key), with the cases it sends
 * instead of the mix's and the share of the group's requests it takes over.
 */
export function incidents(cases) {
  const byId = new Map(cases.map((c) => [c.id, c]));
  const make = (title, alert, share, ids) => {
    const steps = ids.map((id) => byId.get(id)).filter(Boolean);
    return steps.length ? { title, alert, share, steps, group: groupOf(steps[0]) } : undefined;
  };
  return [
    make("silent-failure burst", "GenAISilentFailures", 0.6,
      ["scope_silent_invalid_json", "scope_silent_unexpected_label", "scope_silent_too_short"]),
    make("content_filter spike", "GenAIContentFilterSpike", 0.3,
      ["chat_content_filter", "chat_stream_content_filter", "chat_azure_content_filter", "chat_gemini_safety"]),
    make("video jobs failing", "GenAIVideoJobsFailing", 0.6, ["scope_video_failed", "scope_video_cancelled", "scope_video_stuck"]),
    make("hard-failure wave", "GenAIHardFailureRatioHigh", 0.5, ["scope_retry_exhausted", "scope_no_retry_on_400"]),
  ].filter(Boolean);
}

/**
 * Slots of `every` seconds: normal traffic, then an incident in the slot's last `length` seconds;
 * slot i runs incident i modulo their number.
 *
 * @example new Schedule(1380, 1080, list).active(400)  // list[0]
 */
export class Schedule {
  constructor(every, length, list) {
    if (!(length > 0 && length < every)) throw new RangeError("an incident must be shorter than its slot (0 < length < every)");
    Object.assign(this, { every, length, list });
  }

  active(elapsed) {
    const index = Math.floor(elapsed / this.every);
    const end = (index + 1) * this.every;
    return elapsed >= end - this.length && elapsed < end ? this.list[index % this.list.length] : undefined;
  }

  describe() {
    const first = this.every - this.length;
    return `incidents every ${this.every} s, each lasting ${this.length} s, the first at ${first} s, in turn: ` +
      this.list.map((i) => i.title).join(", ");
  }
}

/**
 * One case of `mix`, drawn by weight with `random` (() => [0, 1)); during `incident`, a draw in
 * its group becomes one of its cases with probability `incident.share`.
 *
 * @example pick(steadyMix(spec.cases), Math.random).id
 */
export function pick(mix, random, incident) {
  const total = mix.reduce((sum, e) => sum + e.weight, 0);
  let at = random() * total;
  let entry = mix[mix.length - 1];
  for (const e of mix) {
    if ((at -= e.weight) < 0) { entry = e; break; }
  }
  if (incident && entry.group === incident.group && random() < incident.share) {
    return incident.steps[Math.floor(random() * incident.steps.length)];
  }
  return entry.case;
}

/** One call of case `c`, scenario in a header (as runCase in test/cases.mjs otherwise). */
export async function runDemoCase(c, baseURL) {
  const { call, scenario } = demoCall(c.call);
  const client = new OpenAI({ baseURL, apiKey: "sk-test", maxRetries: call.max_retries ?? 0, timeout: (call.timeout ?? 10) * 1000 });
  const headers = scenario ? { [SCENARIO_HEADER]: scenario } : {};
  if (call.keyed) headers["X-Failsight-Key"] = `${c.id}-${randomUUID()}`;
  let fn = () => perform(client, call, headers);
  if (c.scope) {
    const retry = c.scope.retry ? new RetryPolicy({ maxAttempts: c.scope.retry, sleep: async () => {} }) : undefined;
    fn = tracedGeneration({ name: c.scope.name, validate: makeValidators(c.scope.validate), retry }, fn);
  }
  try {
    await fn();
  } catch {
    // a failing case throws by design; failsight has recorded it
  }
}

/** `3725` -> `"01:02:05"`. */
export function clockText(seconds) {
  const s = Math.floor(seconds);
  const two = (n) => String(n).padStart(2, "0");
  return `${two(Math.floor(s / 3600))}:${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`;
}

/**
 * Send the mix at `rate` requests per second on average (each gap between half and one and a half
 * times the mean) for `duration` seconds (undefined: until `signal` aborts), with `schedule`'s
 * incidents; resolves with the number of requests once those under way have finished.
 *
 * @example await runContinuous({ baseURL, cases: spec.cases, rate: 4, duration: 9, out: process.stdout })
 */
export async function runContinuous({ baseURL, cases, rate, duration, schedule, out, signal, statusEvery = 60, random = Math.random }) {
  const mix = steadyMix(cases);
  const running = new Set();
  const start = performance.now();
  const elapsed = () => (performance.now() - start) / 1000;
  const say = (line) => out.write(`[${clockText(elapsed())}] ${line}\n`);
  const where = (i) => i.group.split("|").filter((_, n) => n !== 1).join(" (") + ")";
  let current;
  let sent = 0;
  let nextStatus = statusEvery;
  let due = performance.now();
  while (!signal?.aborted && (duration === undefined || elapsed() < duration)) {
    const incident = schedule?.active(elapsed());
    if (incident !== current) {
      if (current) say(`incident over: ${current.title} at call site ${where(current)}`);
      if (incident) say(`incident starts: ${incident.title} at call site ${where(incident)}, ${Math.round(incident.share * 100)}% of its requests; alert ${incident.alert}`);
      current = incident;
    }
    if (running.size >= WORKERS) await Promise.race(running);
    const request = runDemoCase(pick(mix, random, incident), baseURL).finally(() => running.delete(request));
    running.add(request);
    sent += 1;
    if (statusEvery && elapsed() >= nextStatus) {
      say(`${sent} requests so far`);
      nextStatus += statusEvery;
    }
    due += ((0.5 + random()) / rate) * 1000;
    let pause = due - performance.now();
    if (duration !== undefined) pause = Math.min(pause, (duration - elapsed()) * 1000);
    if (pause > 0) await sleep(pause, undefined, { signal }).catch(() => {}); // aborted: stop now
    else if (pause < -1000) due = performance.now(); // fell behind (a slow machine): no burst to catch up
  }
  await Promise.all(running);
  if (current) say(`incident over: ${current.title} at call site ${where(current)}`);
  return sent;
}
