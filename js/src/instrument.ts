// instrumentOpenAI: the `openai` npm client patched, from one table of operations.
//
// Each patched method starts a Call; the SDK's APIPromise is returned as is (so `withResponse()`
// and `asResponse()` keep working), with its response parser wrapped so the parsed answer is
// judged, or followed when it is a stream. SDK-internal retries are seen in the client's
// `fetch`, which is wrapped once per client: each HTTP attempt of the active call is recorded,
// with the SDK's own `x-stainless-retry-count` header.
import OpenAI, { AzureOpenAI, APIUserAbortError } from "openai";
import { UNKNOWN } from "./account.js";
import { classifyError, classifyResult, classifyStatus, providerForHost } from "./classify.js";
import { Call, current, fail, startCall } from "./engine.js";
import { swallow } from "./guard.js";
import { OPERATIONS, type Patched } from "./operations.js";
import { rememberSecret } from "./redact.js";
import { StreamJudge } from "./stream-judge.js";
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
        call.attemptEnded(classifyError(error));
      } catch (e) {
        swallow("attempt", e);
      }
      throw error;
    }
    try {
      call.attemptEnded(classifyStatus(response.status, response.headers));
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

// ------------------------------------------------------------------ answers

function isAbort(error: unknown): boolean {
  const name = field(error, "name");
  // By class name too: a client of another copy of the SDK throws its own class.
  const kind = field(field(error, "constructor"), "name");
  return error instanceof APIUserAbortError || name === "AbortError" || name === "APIUserAbortError" || kind === "APIUserAbortError";
}

function isStream(value: unknown): value is { iterator: Fn; controller?: AbortController } {
  return typeof field(value, "iterator") === "function" && typeof field(value, Symbol.asyncIterator as never) === "function";
}

function judge(call: Call, parsed: unknown): void {
  let o = outcome();
  try {
    o = classifyResult(parsed, call.op.kind);
    call.record(o);
  } catch (error) {
    swallow("call_record", error);
  } finally {
    call.finish(o);
  }
}

/** One streamed answer: chunks, then exactly one end (run out, break, abort, error, abandonment). */
class StreamWatcher {
  private readonly judge: StreamJudge;
  ended = false;

  constructor(
    private readonly call: Call,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.judge = new StreamJudge(call.op.kind);
  }

  chunk(item: unknown): void {
    if (this.ended) return;
    try {
      this.judge.chunk(item);
    } catch (error) {
      swallow("stream_chunk", error);
    }
  }

  end(exhausted: boolean, error?: unknown, hasError = error !== undefined): void {
    if (this.ended) return;
    this.ended = true;
    const call = this.call;
    try {
      if (this.judge.firstToken !== undefined) call.firstChunk(this.judge.firstToken);
      if (hasError) {
        fail(call, error, isAbort(error), this.judge.outcome(false)); // what it reported still counts
        return;
      }
      // A caller's abort ends the iteration quietly: closed early, not cut off.
      const o = this.judge.outcome(exhausted && !this.signal?.aborted);
      call.record(o);
      call.finish(o);
    } catch (e) {
      swallow("stream_end", e);
    } finally {
      call.finish(outcome()); // only when the above could not: finish runs once
    }
  }
}

const abandoned = new FinalizationRegistry<StreamWatcher>((watcher) => {
  try {
    watcher.end(false);
  } catch (error) {
    swallow("abandoned", error);
  }
});

function watchStream(call: Call, stream: { iterator: Fn; controller?: AbortController }): void {
  const watcher = new StreamWatcher(call, stream.controller?.signal);
  const original = stream.iterator;
  stream.iterator = function watchedIterator(this: unknown, ...args: unknown[]) {
    const it = original.apply(this, args) as AsyncIterator<unknown>;
    const watched: AsyncIterableIterator<unknown> = {
      async next(...value: [] | [unknown]) {
        let r: IteratorResult<unknown>;
        try {
          r = await it.next(...value);
        } catch (error) {
          watcher.end(false, error, true);
          throw error;
        }
        if (r.done) watcher.end(true);
        else watcher.chunk(r.value);
        return r;
      },
      async return(value?: unknown) {
        try {
          return it.return ? await it.return(value) : { done: true, value };
        } finally {
          watcher.end(false);
        }
      },
      async throw(error?: unknown) {
        try {
          if (it.throw) return await it.throw(error);
          throw error;
        } finally {
          watcher.end(false, error, true);
        }
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
    return watched;
  } as Fn;
  abandoned.register(stream as object, watcher);
}

/** The SDK's APIPromise, its parser wrapped; anything else, followed. */
function follow(call: Call, result: unknown): unknown {
  const promise = result as Obj;
  if (result instanceof Promise && typeof promise.parseResponse === "function" && promise.responsePromise instanceof Promise) {
    const parse = promise.parseResponse as (client: unknown, props: unknown) => Promise<unknown>;
    let parsing = false;
    promise.parseResponse = async (client: unknown, props: unknown) => {
      parsing = true;
      let parsed: unknown;
      try {
        parsed = await parse(client, props);
      } catch (error) {
        try {
          const o = classifyError(error);
          call.finish(o.reason === "exception" ? { ...o, reason: "invalid_response" } : o, error);
        } catch (e) {
          swallow("call_record", e);
        }
        throw error;
      }
      try {
        if (isStream(parsed)) watchStream(call, parsed);
        else judge(call, parsed);
      } catch (error) {
        swallow("call_record", error);
        call.finish(outcome());
      }
      return parsed;
    };
    (promise.responsePromise as Promise<unknown>).then(undefined, (error: unknown) => fail(call, error, isAbort(error)));
    // `asResponse()` alone never parses: the call is known by its status then.
    const asResponse = promise.asResponse as () => Promise<Response>;
    promise.asResponse = function (this: unknown) {
      return asResponse.call(promise).then((response) => {
        queueMicrotask(() => {
          if (!parsing) call.finish(classifyStatus(response.status, response.headers) ?? outcome());
        });
        return response;
      });
    };
    return result;
  }
  if (result instanceof Promise) {
    return result.then(
      (value) => {
        if (isStream(value)) watchStream(call, value);
        else judge(call, value);
        return value;
      },
      (error: unknown) => {
        fail(call, error, isAbort(error));
        throw error;
      },
    );
  }
  judge(call, result);
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
