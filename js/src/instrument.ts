// instrumentOpenAI: the `openai` npm client patched, from one table of operations.
//
// Each patched method starts a Call, keeping what its request declares (tools, structured
// output); the SDK's APIPromise is returned as is (so `withResponse()` and `asResponse()` keep
// working), followed by answers.ts so the parsed answer is judged, or followed when it is a stream. SDK-internal retries are seen in the client's
// `fetch`, which is wrapped once per client: each HTTP attempt of the active call is recorded,
// with the SDK's own `x-stainless-retry-count` header.
import OpenAI, { AzureOpenAI } from "openai";
import { UNKNOWN } from "./account.js";
import { follow } from "./answers.js";
import { classifyError, classifyStatus, providerForHost } from "./classify.js";
import { Call, current, fail, startCall } from "./engine.js";
import { swallow } from "./guard.js";
import { declare } from "./judged.js";
import { OPERATIONS, type Patched } from "./operations.js";
import { rememberSecret } from "./redact.js";
import { field, outcome } from "./taxonomy.js";

const ORIGINAL = Symbol("failsight.original");
type Fn = ((this: unknown, ...args: unknown[]) => unknown) & { [ORIGINAL]?: Fn };
type Obj = Record<string | symbol, unknown>;

// ------------------------------------------------------------------ the client's fetch

const fetchPatched = new WeakMap<object, unknown>(); // client -> its fetch before the patch

function headerValue(headers: unknown, name: string): string | undefined {
  if (!headers) return undefined;
  try {
    if (typeof (headers as Headers).get === "function") return (headers as Headers).get(name) ?? undefined;
    if (Array.isArray(headers)) return (headers as [string, string][]).find(([k]) => k.toLowerCase() === name)?.[1];
    const record = headers as Record<string, unknown>;
    for (const key of Object.keys(record)) if (key.toLowerCase() === name) return String(record[key]);
  } catch {
    // odd headers: no retry count
  }
  return undefined;
}

/** The exact key sent (a client's key can change: a function that refreshes it), masked wherever it shows up. */
function rememberSent(headers: unknown): void {
  const auth = headerValue(headers, "authorization");
  if (auth !== undefined && auth.slice(0, 7).toLowerCase() === "bearer ") rememberSecret(auth.slice(7).trim());
  const key = headerValue(headers, "api-key");
  if (key !== undefined) rememberSecret(key.trim());
}

function patchFetch(client: Obj): void {
  if (fetchPatched.has(client)) return;
  const original = client.fetch;
  if (typeof original !== "function") return;
  fetchPatched.set(client, Object.prototype.hasOwnProperty.call(client, "fetch") ? original : ABSENT);
  const wrapped = async function failsightFetch(this: unknown, url: unknown, init?: { headers?: unknown }): Promise<Response> {
    const call = current.getStore()?.call;
    // The SDK probes its fetch with a `data:` URL (FormData support): not an attempt.
    if (!call || call.done || !/^https?:/i.test(String(url instanceof Request ? url.url : url))) return (original as (u: unknown, i: unknown) => Promise<Response>).call(undefined, url, init);
    try {
      rememberSent(init?.headers);
      const raw = headerValue(init?.headers, "x-stainless-retry-count");
      call.attemptStarted(raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : undefined);
    } catch (error) {
      swallow("attempt", error);
    }
    let response: Response;
    try {
      response = await (original as (u: unknown, i: unknown) => Promise<Response>).call(undefined, url, init);
    } catch (error) {
      try {
        if (field(error, "name") === "AbortError") call.attemptAborted();
        else call.attemptEnded(classifyError(error));
      } catch (e) {
        swallow("attempt", e);
      }
      throw error;
    }
    try {
      // every answer's headers: success, 429 and other errors, streamed or not, raw or parsed
      call.attemptEnded(classifyStatus(response.status, response.headers), response.status, response.headers);
    } catch (e) {
      swallow("attempt", e);
    }
    return response;
  };
  client.fetch = wrapped;
}

function unpatchFetch(client: Obj): void {
  if (!fetchPatched.has(client)) return;
  const before = fetchPatched.get(client);
  fetchPatched.delete(client);
  if (before === ABSENT) delete client.fetch;
  else client.fetch = before;
}

const ABSENT = Symbol("absent");

// ------------------------------------------------------------------ where a call goes

const servers = new WeakMap<object, [string, string | undefined, number | undefined]>();

function serverOf(client: Obj | undefined): [string, string | undefined, number | undefined] {
  if (!client) return ["unknown", undefined, undefined];
  const known = servers.get(client);
  if (known) return known;
  let result: [string, string | undefined, number | undefined] = ["unknown", undefined, undefined];
  try {
    const url = new URL(String(client.baseURL));
    const host = url.hostname.replace(/^\[|\]$/g, "");
    const port = url.port ? Number(url.port) : url.protocol === "https:" ? 443 : 80;
    result = [providerForHost(host), host, port];
    if (client instanceof AzureOpenAI) result[0] = "azure.ai.openai";
  } catch {
    // no base URL: unknown
  }
  rememberSecret(client.apiKey); // masked wherever it shows up, pattern or not
  servers.set(client, result);
  return result;
}

function wrap(spec: Patched, original: Fn): Fn {
  const wrapper = function failsightWrapper(this: unknown, ...args: unknown[]): unknown {
    let call: Call | undefined;
    try {
      const client = field(this, "_client") as Obj | undefined;
      if (client) patchFetch(client);
      const body = spec.bodyArg >= 0 ? args[spec.bodyArg] : undefined;
      const model = field(body, "model");
      const [provider, address, port] = serverOf(client);
      call = startCall(spec.op, typeof model === "string" && model ? model : UNKNOWN, provider, address, port, field(body, "stream") === true);
      if (call) declare(call, body);
    } catch (error) {
      swallow("call_start", error);
    }
    if (!call) return original.apply(this, args);
    const active = call;
    const store = { ...current.getStore(), call: active, account: active.account ?? current.getStore()?.account };
    let result: unknown;
    try {
      result = current.run(store, () => original.apply(this, args));
    } catch (error) {
      fail(active, error);
      throw error;
    }
    try {
      return follow(active, result);
    } catch (error) {
      swallow("call_record", error);
      active.finish(outcome());
      return result;
    }
  } as Fn;
  wrapper[ORIGINAL] = original;
  return wrapper;
}

// ------------------------------------------------------------------ lifecycle

let globalPatches: [Obj, string, Fn][] = [];
const clientPatches = new WeakMap<object, [Obj, string, unknown][]>();

function resource(client: unknown, path: readonly string[]): Obj | undefined {
  let node: unknown = client;
  for (const part of path) {
    node = field(node, part);
    if (node === undefined || node === null) return undefined;
  }
  return node as Obj;
}

/**
 * Patch every `OpenAI` client (its resource classes), or only `client`. Idempotent.
 *
 * @example
 * const client = new OpenAI({ baseURL: "https://api.cometapi.com/v1" });
 * instrumentOpenAI(client);
 */
export function instrumentOpenAI(client?: OpenAI): void {
  if (client !== undefined) {
    // Duck-typed: a client of another copy of the SDK (the major before, say) is one too.
    if (!(client instanceof OpenAI) && typeof resource(client, ["chat", "completions"])?.create !== "function") {
      throw new TypeError("instrumentOpenAI(client) takes an OpenAI client, or nothing to patch every client");
    }
    if (clientPatches.has(client)) return;
    const done: [Obj, string, unknown][] = [];
    for (const spec of OPERATIONS) {
      const res = resource(client, spec.path);
      if (!res) continue;
      for (const method of spec.methods) {
        const fn = res[method] as Fn | undefined;
        if (typeof fn !== "function") continue;
        done.push([res, method, Object.prototype.hasOwnProperty.call(res, method) ? fn : ABSENT]);
        res[method] = wrap(spec, fn[ORIGINAL] ?? fn);
      }
    }
    clientPatches.set(client, done);
    patchFetch(client as unknown as Obj);
    return;
  }
  if (globalPatches.length) return;
  // The resource classes of this copy of the SDK, found through a client that sends nothing.
  const probe = new OpenAI({ apiKey: "failsight-probe", baseURL: "http://127.0.0.1:9/v1" });
  const seen = new Set<string>();
  for (const spec of OPERATIONS) {
    const res = resource(probe, spec.path);
    if (!res) continue;
    const proto = Object.getPrototypeOf(res) as Obj;
    for (const method of spec.methods) {
      const fn = proto[method] as Fn | undefined;
      const key = `${spec.path.join(".")}.${method}`;
      if (typeof fn !== "function" || seen.has(key)) continue;
      seen.add(key);
      globalPatches.push([proto, method, fn]);
      proto[method] = wrap(spec, fn);
    }
  }
}

/** Undo instrumentOpenAI (for `client` only, if given): the original methods restored exactly. */
export function uninstrumentOpenAI(client?: OpenAI): void {
  if (client !== undefined) {
    const done = clientPatches.get(client);
    if (!done) return;
    clientPatches.delete(client);
    for (const [target, name, before] of done.reverse()) {
      if (before === ABSENT) delete target[name];
      else target[name] = before;
    }
    unpatchFetch(client as unknown as Obj);
    return;
  }
  for (const [proto, method, fn] of globalPatches.reverse()) proto[method] = fn;
  globalPatches = [];
}

export { OpenAI };
