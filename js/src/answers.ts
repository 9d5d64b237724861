// What an SDK call returns, recorded (the Python package's _sdk_answers): an answer classified
// and judged against what its request declared, a stream followed to its end (tool-call deltas
// assembled when tools were declared), and the SDK's own `_thenUnwrap` followed, so that
// `chat.completions.parse` and `responses.parse` (create, then a transform of its answer) end
// their call as `create` does, their parse errors judged by the answer they refused.
import { APIUserAbortError } from "openai";
import { classifyError, classifyResult, classifyStatus } from "./classify.js";
import { StreamAnswer } from "./declared.js";
import { Call, fail } from "./engine.js";
import { swallow } from "./guard.js";
import { judged, judgedError } from "./judged.js";
import { StreamJudge } from "./stream-judge.js";
import { field, outcome } from "./taxonomy.js";

type Fn = (this: unknown, ...args: unknown[]) => unknown;
type Obj = Record<string | symbol, unknown>;

export function isAbort(error: unknown): boolean {
  const name = field(error, "name");
  // By class name too: a client of another copy of the SDK throws its own class.
  const kind = field(field(error, "constructor"), "name");
  return error instanceof APIUserAbortError || name === "AbortError" || name === "APIUserAbortError" || kind === "APIUserAbortError";
}

function isStream(value: unknown): value is { iterator: Fn; controller?: AbortController } {
  return typeof field(value, "iterator") === "function" && typeof field(value, Symbol.asyncIterator as never) === "function";
}

/** A whole answer: classified, judged against what its request declared, recorded; the call finished. */
function settle(call: Call, parsed: unknown): void {
  let o = outcome();
  try {
    o = classifyResult(parsed, call.op.kind);
    if (call.declared !== undefined) o = judged(call, o, parsed);
    call.record(o);
  } catch (error) {
    swallow("call_record", error);
  } finally {
    call.finish(o);
  }
}

/** The SDK's parse of `raw` threw `error` (`parse()` refusing an answer): ended as `create` would have. */
function settleRefused(call: Call, error: unknown, raw: unknown): void {
  let o = outcome();
  try {
    o = judgedError(call, error, raw);
    call.record(o);
  } catch (e) {
    swallow("call_record", e);
  } finally {
    call.finish(o, error);
  }
}

/** The body could not be parsed: hard, `invalid_response` unless the error says more. */
function parseFailed(call: Call, error: unknown): void {
  try {
    const o = classifyError(error);
    call.finish(o.reason === "exception" ? { ...o, reason: "invalid_response" } : o, error);
  } catch (e) {
    swallow("call_record", e);
  }
}

/** One streamed answer: chunks, then exactly one end (run out, break, abort, error, abandonment). */
class StreamWatcher {
  private readonly judge: StreamJudge;
  // The answer put back together, when its request declared what it should be.
  private readonly answer: StreamAnswer | undefined;
  ended = false;

  constructor(
    private readonly call: Call,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.judge = new StreamJudge(call.op.kind);
    const declared = call.declared;
    if (declared !== undefined) this.answer = new StreamAnswer(call.op.kind, declared.output !== undefined);
  }

  chunk(item: unknown): void {
    if (this.ended) return;
    try {
      this.judge.chunk(item);
      this.answer?.chunk(item);
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
      let o = this.judge.outcome(exhausted && !this.signal?.aborted);
      const answer = this.answer;
      if (answer !== undefined && (o.finishReasons.length || answer.final !== undefined)) o = judged(call, o, answer.answer()); // whole: it has its end
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

/** A parsed answer: a stream followed, anything else settled. */
function parsedAnswer(call: Call, parsed: unknown): void {
  try {
    if (isStream(parsed)) watchStream(call, parsed);
    else settle(call, parsed);
  } catch (error) {
    swallow("call_record", error);
    call.finish(outcome());
  }
}

/** The APIPromises of one call: the one `create` returned and those derived from it by `_thenUnwrap`. */
interface Chain {
  parsing: boolean; // some parse started: `asResponse()` alone does not end the call
  outer: object | undefined; // the promise whose parse settles the call
}

/** What a derived promise's transform was given: the answer before `parse()` read it. */
interface Slot {
  seen: boolean;
  raw: unknown;
}

function isApiPromise(value: unknown): boolean {
  const promise = value as Obj;
  return value instanceof Promise && typeof promise.parseResponse === "function" && promise.responsePromise instanceof Promise;
}

/**
 * Follow one APIPromise of `call`: its parser wrapped, so the parsed answer is judged or
 * followed; its `_thenUnwrap` too, whose promise (the SDK's `parse()` helpers return one) then
 * settles the call with the answer its transform was given. An own `_thenUnwrap` (openai 7 sets
 * one per promise, calling the parser it was made with, not `parseResponse`) is wrapped like the
 * prototype's.
 */
function followPromise(call: Call, chain: Chain, promise: Obj, slot?: Slot): void {
  const parse = promise.parseResponse as (client: unknown, props: unknown) => Promise<unknown>;
  promise.parseResponse = async (client: unknown, props: unknown) => {
    chain.parsing = true;
    // A derived promise parsing through this one (openai 6's `_thenUnwrap`) settles the call itself.
    const outer = chain.outer === undefined || chain.outer === promise;
    if (outer) chain.outer = promise;
    if (!outer || call.done) return parse(client, props);
    let parsed: unknown;
    try {
      parsed = await parse(client, props);
    } catch (error) {
      if (slot?.seen) settleRefused(call, error, slot.raw);
      else parseFailed(call, error);
      throw error;
    }
    parsedAnswer(call, slot?.seen ? slot.raw : parsed);
    return parsed;
  };
  const unwrap = promise._thenUnwrap;
  if (typeof unwrap === "function") {
    promise._thenUnwrap = function (this: unknown, transform: (value: unknown, props: unknown) => unknown) {
      const seen: Slot = { seen: false, raw: undefined };
      const derived = (unwrap as Fn).call(promise, (value: unknown, props: unknown) => {
        seen.seen = true;
        seen.raw = value;
        return transform(value, props);
      });
      try {
        if (isApiPromise(derived)) followPromise(call, chain, derived as Obj, seen);
      } catch (error) {
        swallow("call_record", error);
      }
      return derived;
    };
  }
  // `asResponse()` alone never parses: the call is known by its status then.
  const asResponse = promise.asResponse as () => Promise<Response>;
  promise.asResponse = function (this: unknown) {
    return asResponse.call(promise).then((response) => {
      queueMicrotask(() => {
        if (!chain.parsing) call.finish(classifyStatus(response.status, response.headers) ?? outcome());
      });
      return response;
    });
  };
}

/** The SDK's APIPromise, followed; any other promise or value, followed too. */
export function follow(call: Call, result: unknown): unknown {
  if (isApiPromise(result)) {
    followPromise(call, { parsing: false, outer: undefined }, result as Obj);
    (result as { responsePromise: Promise<unknown> }).responsePromise.then(undefined, (error: unknown) => fail(call, error, isAbort(error)));
    return result;
  }
  if (result instanceof Promise) {
    return result.then(
      (value) => {
        parsedAnswer(call, value);
        return value;
      },
      (error: unknown) => {
        fail(call, error, isAbort(error));
        throw error;
      },
    );
  }
  settle(call, result);
  return result;
}
