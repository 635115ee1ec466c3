/**
 * Write taskhost task plugins in JavaScript.
 *
 * A task is a plain function from a JSON input to a JSON output. Wrap it with
 * {@link task} and export it as `run`; the SDK decodes the run's input, calls
 * your function with a {@link Context} (logging, key-value state, config,
 * secrets, progress), encodes what it returns as JSON, and reports errors as
 * retryable or fatal so the host knows whether to try again:
 *
 * ```js
 * import { task } from 'taskhost-sdk';
 *
 * export const run = task((ctx, input) => {
 *   ctx.info(`greeting ${input.name}`);
 *   return `Hello, ${input.name}!`;
 * });
 * ```
 *
 * Build it into a component with `build-plugin.mjs` (it bundles the plugin
 * and this SDK with esbuild, then runs ComponentizeJS against the
 * repository's `wit/`), and run it with
 * `taskhost run plugin.wasm --input '{"name":"Ada"}'`.
 *
 * Errors: throw {@link Retryable} for a failure worth retrying and
 * {@link Fatal} for one that is not. Any other exception is reported as
 * retryable (a transient failure is the safe guess, as with `?` in the Rust
 * SDK) and its stack is logged at error level. Input that is not JSON is
 * fatal: retrying would not change it.
 *
 * The task function may be `async` (for `fetch`, timers): the component runs
 * its event loop until the returned promise settles.
 *
 * `console.log` and friends write to the execution's log (the component has
 * no stdout: it is built without WASI stdio, which would also import the
 * filesystem).
 *
 * The module's top level runs at build time (ComponentizeJS snapshots the
 * engine after evaluating it), so calling the host there fails: call it
 * from the task function.
 *
 * @module taskhost-sdk
 */

import {
  log as hostLog,
  kvGet as hostKvGet,
  kvSet as hostKvSet,
  kvDelete as hostKvDelete,
  configGet as hostConfigGet,
  secretGet as hostSecretGet,
  progress as hostProgress,
  stepGet as hostStepGet,
  stepDone as hostStepDone,
  sleep as hostSleep,
  waitForEvent as hostWaitForEvent,
  spawn as hostSpawn,
  join as hostJoin,
} from 'taskhost:plugin/host@0.1.0';

/** @typedef {'trace' | 'debug' | 'info' | 'warn' | 'error'} LogLevel */

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error']);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Why a task failed. Throw {@link Retryable} or {@link Fatal}.
 */
export class TaskError extends Error {
  /**
   * @param {string} message
   */
  constructor(message) {
    super(String(message));
    this.name = new.target.name;
  }

  /** Whether the host should try again. */
  get retryable() {
    return false;
  }
}

/** A transient failure: the host retries per the schedule's retry policy. */
export class Retryable extends TaskError {
  get retryable() {
    return true;
  }
}

/** A permanent failure (bad input, a missing resource): never retried. */
export class Fatal extends TaskError {
  get retryable() {
    return false;
  }
}

/** The message of an error a host function reported (a ComponentError's payload). */
function hostErrorMessage(e) {
  if (e !== null && typeof e === 'object' && 'payload' in e) {
    return String(e.payload);
  }
  return e instanceof Error ? e.message : String(e);
}

/** Calls a host function whose WIT result is `result<T, string>`. */
function call(ErrorClass, fn, ...args) {
  try {
    return fn(...args);
  } catch (e) {
    throw new ErrorClass(hostErrorMessage(e));
  }
}

/** One value as text for a log line, like console formatting. */
function show(value) {
  if (typeof value === 'string') return value;
  if (value instanceof Error) return value.stack ? `${value}\n${value.stack}`.trimEnd() : String(value);
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') {
    return String(value);
  }
  if (typeof value === 'bigint') return `${value}n`;
  try {
    const text = JSON.stringify(value);
    return text === undefined ? String(value) : text;
  } catch {
    return String(value);
  }
}

/**
 * What a task can see of its run and of the host.
 */
export class Context {
  /**
   * @param {object} invocation the WIT `invocation` record as ComponentizeJS
   *   passes it (`executionId`, `scheduleId`, `attempt`, `scheduledAtMs`).
   */
  constructor(invocation) {
    /** Unique id of this execution (the same across retries). @type {string} */
    this.executionId = invocation.executionId;
    /** The schedule that produced this run; `null` for ad hoc runs. @type {string | null} */
    this.scheduleId = invocation.scheduleId ?? null;
    /** 1 on the first attempt, 2 on the first retry, and so on. @type {number} */
    this.attempt = invocation.attempt;
    /** When the run was due, in milliseconds since the Unix epoch (UTC). @type {number} */
    this.scheduledAtMs = Number(invocation.scheduledAtMs);
    Object.freeze(this);
  }

  // Logging ----------------------------------------------------------------

  /**
   * Write a log line; the host stores it with the execution.
   * @param {LogLevel} level
   * @param {string} message
   */
  log(level, message) {
    if (!LEVELS.has(level)) throw new TypeError(`unknown log level ${JSON.stringify(level)}`);
    hostLog(level, String(message));
  }

  /** Log at trace level. @param {string} message */
  trace(message) {
    this.log('trace', message);
  }

  /** Log at debug level. @param {string} message */
  debug(message) {
    this.log('debug', message);
  }

  /** Log at info level. @param {string} message */
  info(message) {
    this.log('info', message);
  }

  /** Log at warn level. @param {string} message */
  warn(message) {
    this.log('warn', message);
  }

  /** Log at error level. @param {string} message */
  error(message) {
    this.log('error', message);
  }

  // Config and secrets -----------------------------------------------------

  /**
   * A read-only configuration value given to this run, or `null`.
   * @param {string} key
   * @returns {string | null}
   */
  config(key) {
    return hostConfigGet(String(key)) ?? null;
  }

  /**
   * One of the tenant's secrets, if this run may read it (its schedule or
   * request names it in `secrets`); throws {@link Fatal} saying why not. The
   * host scrubs the value from the run's output, errors, logs, stdout and
   * stderr before storing them.
   * @param {string} name
   * @returns {string}
   */
  secret(name) {
    return call(Fatal, hostSecretGet, String(name));
  }

  // Key-value state --------------------------------------------------------

  /**
   * Read a JSON value from this plugin's key-value state (`null` if absent).
   * A stored value that is not JSON throws {@link Fatal}; a storage failure
   * throws {@link Retryable}.
   * @param {string} key
   * @returns {any}
   */
  kvGet(key) {
    const raw = this.kvGetBytes(key);
    if (raw === null) return null;
    try {
      return JSON.parse(decoder.decode(raw));
    } catch (e) {
      throw new Fatal(`kv value ${JSON.stringify(key)} is not the expected JSON: ${e.message}`);
    }
  }

  /**
   * Store a value as JSON in this plugin's key-value state.
   * @param {string} key
   * @param {any} value
   */
  kvSet(key, value) {
    let text;
    try {
      text = JSON.stringify(value);
    } catch (e) {
      throw new Fatal(`kv value ${JSON.stringify(key)} is not JSON: ${e.message}`);
    }
    if (text === undefined) {
      throw new Fatal(`kv value ${JSON.stringify(key)} is not JSON: ${typeof value}`);
    }
    this.kvSetBytes(key, encoder.encode(text));
  }

  /**
   * Read raw bytes from this plugin's key-value state (`null` if absent).
   * @param {string} key
   * @returns {Uint8Array | null}
   */
  kvGetBytes(key) {
    return call(Retryable, hostKvGet, String(key)) ?? null;
  }

  /**
   * Store raw bytes (a string is stored as UTF-8) in this plugin's key-value state.
   * @param {string} key
   * @param {Uint8Array | ArrayBuffer | string} value
   */
  kvSetBytes(key, value) {
    const bytes =
      typeof value === 'string'
        ? encoder.encode(value)
        : value instanceof Uint8Array
          ? value
          : new Uint8Array(value);
    call(Retryable, hostKvSet, String(key), bytes);
  }

  /**
   * Delete a key; returns whether it existed.
   * @param {string} key
   * @returns {boolean}
   */
  kvDelete(key) {
    return call(Retryable, hostKvDelete, String(key));
  }

  // Workflows --------------------------------------------------------------

  /**
   * A durable step: `work()` (which may be async) runs once per execution.
   * Its result (JSON) is recorded, with the kv writes made so far, before
   * the workflow goes on; a later run of the execution (after a retry, a
   * crash or a sleep) gets the recorded result without calling `work`. Ask
   * for the same steps in the same order on every run: a replay that
   * departs from the record fails as a non-deterministic workflow.
   * @template T
   * @param {string} name
   * @param {() => T | Promise<T>} work
   * @returns {Promise<T>}
   */
  async step(name, work) {
    const recorded = hostStepGet(String(name));
    if (recorded !== undefined && recorded !== null) {
      return JSON.parse(decoder.decode(recorded));
    }
    const value = await work();
    const text = JSON.stringify(value === undefined ? null : value);
    hostStepDone(String(name), encoder.encode(text));
    return value;
  }

  /**
   * A durable sleep, itself a step named `name`: the run ends here, holding
   * no worker, and the execution runs again (replaying its steps) once `ms`
   * milliseconds have passed since the sleep was reached.
   * @param {string} name
   * @param {number} ms
   */
  async sleep(name, ms) {
    hostSleep(String(name), BigInt(Math.max(0, Math.trunc(Number(ms) || 0))));
  }

  /**
   * A step that waits for event `event` sent to this execution
   * (`POST /v1/executions/{id}/events`) whose data has the fields of
   * `filter`: the event (`id`, `name`, `data`, `received_at`), or `null`
   * once `timeoutMs` has passed since the wait began. Meanwhile the run
   * ends, holding no worker.
   * @param {string} name
   * @param {string} event
   * @param {unknown} [filter]
   * @param {number} [timeoutMs]
   * @returns {Promise<unknown>}
   */
  async waitForEvent(name, event, filter = null, timeoutMs = 3_600_000) {
    const ms = BigInt(Math.max(0, Math.trunc(Number(timeoutMs) || 0)));
    const raw = hostWaitForEvent(String(name), String(event), JSON.stringify(filter ?? null), ms);
    return raw === undefined || raw === null ? null : JSON.parse(decoder.decode(raw));
  }

  /**
   * A step that makes child runs, linked to this execution and queued at
   * once; their ids. Each child is `{plugin, input, options, detach}`:
   * `plugin` an id, `name@version`, `name@alias` or a name (its latest
   * version); `options` run options as `POST /v1/executions` takes them;
   * `detach` not cancelled with this execution. A replay returns the
   * recorded ids and makes nothing again. Refused (a {@link Retryable}) for
   * an unknown plugin, a bad option, past 1,000 children per execution or
   * 4 levels deep, or past the queue quota.
   * @param {string} name
   * @param {Array<{plugin: string, input?: unknown, options?: object, detach?: boolean}>} children
   * @returns {Promise<string[]>}
   */
  async spawn(name, children) {
    const runs = children.map((c) => ({
      plugin: String(c.plugin),
      input: encoder.encode(JSON.stringify(c.input ?? null)),
      options: JSON.stringify({ ...(c.options ?? {}), ...(c.detach ? { detach: true } : {}) }),
    }));
    return call(Retryable, hostSpawn, String(name), runs);
  }

  /**
   * A step that waits until `children` (ids this execution spawned) have
   * all ended — the run ends meanwhile, holding no worker — and returns how
   * each ended, in order: `{id, status, output, error}`.
   * @param {string} name
   * @param {string[]} children
   * @returns {Promise<{id: string, status: string, output?: unknown, error?: string}[]>}
   */
  async join(name, children) {
    return JSON.parse(decoder.decode(hostJoin(String(name), children.map(String))));
  }

  // Progress ---------------------------------------------------------------

  /**
   * Report progress (0-100, clamped) with an optional note; it also serves
   * as a heartbeat for long runs.
   * @param {number} percent
   * @param {string} [note]
   */
  progress(percent, note) {
    const pct = Math.max(0, Math.min(100, Math.trunc(Number(percent) || 0)));
    hostProgress(pct, note === undefined || note === null ? undefined : String(note));
  }
}

/** The WIT `task-error` for anything a task threw. */
function toTaskError(e, ctx) {
  if (e instanceof Retryable) return { tag: 'retryable', val: e.message };
  if (e instanceof TaskError) return { tag: 'fatal', val: e.message };
  // Anything else is retryable, as in the Rust and Python SDKs; its stack
  // goes to the log (the component has no stderr to print it to).
  const name = e instanceof Error ? e.name : typeof e;
  const message = e instanceof Error ? e.message : show(e);
  try {
    if (ctx) ctx.error(e instanceof Error && e.stack ? `${e}\n${e.stack}`.trimEnd() : `${name}: ${message}`);
  } catch {
    // The log may be unusable (e.g. out of memory); the error still counts.
  }
  return { tag: 'retryable', val: `${name}: ${message}` };
}

/** The output bytes for what a task returned. */
function encodeOutput(output) {
  let text;
  try {
    text = JSON.stringify(output === undefined ? null : output);
  } catch (e) {
    throw new Fatal(`output is not JSON: ${e.message}`);
  }
  if (text === undefined) throw new Fatal(`output is not JSON: ${typeof output}`);
  return encoder.encode(text);
}

/**
 * Turn `fn(ctx, input)` into this component's `run` export:
 * `export const run = task((ctx, input) => ...)`.
 *
 * `input` is the run's input decoded from JSON (`null` for an empty input).
 * The return value (or what the returned promise resolves to) is encoded as
 * JSON (`undefined` as `null`). A thrown {@link Retryable} or {@link Fatal}
 * becomes the WIT `task-error`; anything else is retryable.
 *
 * @template I, O
 * @param {(ctx: Context, input: I) => O | Promise<O>} fn
 * @returns {(invocation: object) => Uint8Array | Promise<Uint8Array>}
 */
export function task(fn) {
  if (typeof fn !== 'function') throw new TypeError('task() takes the task function');
  return function run(invocation) {
    // ComponentizeJS turns a value thrown by (or a promise rejection of) an
    // export returning a WIT `result` into its `err` case: here the
    // `task-error` variant as `{ tag, val }`. Any other thrown value traps.
    let ctx;
    try {
      const raw = invocation.input;
      let input;
      try {
        input = raw && raw.length > 0 ? JSON.parse(decoder.decode(raw)) : null;
      } catch (e) {
        throw new Fatal(`invalid input: ${e.message}`);
      }
      ctx = new Context(invocation);
      const output = fn(ctx, input);
      if (output !== null && typeof output === 'object' && typeof output.then === 'function') {
        return Promise.resolve(output)
          .then(encodeOutput)
          .catch((e) => {
            throw toTaskError(e, ctx);
          });
      }
      return encodeOutput(output);
    } catch (e) {
      throw toTaskError(e, ctx);
    }
  };
}

// console.* goes to the execution's log: the component is built without
// WASI stdio. (Assigned at build time; called only while a task runs.)
const consoleLevels = {
  log: 'info',
  info: 'info',
  debug: 'debug',
  trace: 'trace',
  warn: 'warn',
  error: 'error',
};
for (const [method, level] of Object.entries(consoleLevels)) {
  try {
    globalThis.console[method] = (...args) => hostLog(level, args.map(show).join(' '));
  } catch {
    // A console that cannot be patched keeps its default behaviour.
  }
}
