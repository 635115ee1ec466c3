// The JavaScript test plugin: its input's `mode` selects a behaviour (the
// same modes as plugins/test-py).
//
// - {"mode": "count"}: increments the kv counter `count` and returns it.
// - {"mode": "retry", "fail_until_attempt": N}: fails (retryably) while the
//   attempt is below N, then returns {"attempt": attempt}.
// - {"mode": "fatal"}: fails fatally.
// - {"mode": "raise"}: throws an ordinary exception (reported as retryable).
// - {"mode": "loop"}: loops forever (stopped by fuel or the timeout).
// - {"mode": "memhog"}: allocates 1 MiB at a time until the memory limit.
// - {"mode": "context"}: returns what the Context shows (invocation fields,
//   config `greeting`), exercising kv bytes/delete, progress and logging.
// - {"mode": "secret", "name": NAME}: returns the length of a secret.
// - {"mode": "async"}: awaits a timer, then returns "async done".
// - {"mode": "fetch", "url": URL}: GETs URL with `fetch` (wasi:http) and
//   returns {"status", "body"} (the run must be granted the host).
// - {"mode": "workflow", "fail_two_once"?: BOOL, "sleep_ms"?: N, "wait"?:
//   {"event", "filter", "timeout_ms"}}: three durable steps counting their
//   runs in kv (`one`, `two`, `three`); step two fails on attempt 1 if asked;
//   a durable sleep `nap`, then a wait for the event (`approval`, in the
//   output), between two and three.
// - {"mode": "fanout", "count": N, "plugin": P}: spawns N children of P
//   (`{"mode": "square", "x": i}`), joins them and returns the sum of their
//   outputs.
// - {"mode": "square", "x": X}: returns X * X.
// - anything else (or no input): returns "Hello from JavaScript!".
import { Fatal, Retryable, task } from 'taskhost-sdk';

export const run = task((ctx, input) => {
  const mode = input !== null && typeof input === 'object' ? input.mode : undefined;
  switch (mode) {
    case 'workflow':
      return workflow(ctx, input);
    case 'square':
      return input.x * input.x;
    case 'fanout':
      return fanout(ctx, input);
    case 'count': {
      const count = (ctx.kvGet('count') ?? 0) + 1;
      ctx.kvSet('count', count);
      return count;
    }
    case 'retry': {
      const until = Number(input.fail_until_attempt ?? 2);
      if (ctx.attempt < until) {
        throw new Retryable(`attempt ${ctx.attempt} fails until attempt ${until}`);
      }
      return { attempt: ctx.attempt };
    }
    case 'fatal':
      throw new Fatal('do not try again');
    case 'raise':
      return input.missing.field;
    case 'loop': {
      let x = 0;
      for (;;) {
        x += 1;
      }
    }
    case 'memhog': {
      const hoard = [];
      for (;;) {
        hoard.push(new Uint8Array(1 << 20).fill(0xa5));
      }
    }
    case 'context': {
      ctx.kvSetBytes('scratch', 'temp');
      const deleted = ctx.kvDelete('scratch');
      const deletedAgain = ctx.kvDelete('scratch');
      ctx.progress(50, 'half way');
      ctx.warn('a warning');
      console.log('to the log');
      return {
        deleted,
        deleted_again: deletedAgain,
        greeting: ctx.config('greeting'),
        execution_id: ctx.executionId,
        schedule_id: ctx.scheduleId,
        attempt: ctx.attempt,
        scheduled_at_ms: ctx.scheduledAtMs,
      };
    }
    case 'secret':
      return { length: ctx.secret(input.name).length };
    case 'async':
      return new Promise((resolve) => setTimeout(() => resolve('async done'), 10));
    case 'fetch':
      return fetch(input.url).then(async (response) => ({
        status: response.status,
        body: await response.text(),
      }));
    default:
      return 'Hello from JavaScript!';
  }
});

async function fanout(ctx, input) {
  const children = [];
  for (let i = 0; i < Number(input.count); i += 1) {
    children.push({ plugin: input.plugin, input: { mode: 'square', x: i } });
  }
  const ids = await ctx.spawn('fan-out', children);
  const outcomes = await ctx.join('join', ids);
  return outcomes.reduce((sum, o) => sum + Number(o.output), 0);
}

async function workflow(ctx, input) {
  const count = (key) => {
    const n = (ctx.kvGet(key) ?? 0) + 1;
    ctx.kvSet(key, n);
    return n;
  };
  const one = await ctx.step('one', () => count('one'));
  const two = await ctx.step('two', () => {
    const n = count('two');
    if (input.fail_two_once && ctx.attempt === 1) {
      throw new Retryable('step two fails on the first attempt');
    }
    return n;
  });
  if (input.sleep_ms) {
    await ctx.sleep('nap', input.sleep_ms);
  }
  const result = { one, two };
  if (input.wait) {
    const { event, filter, timeout_ms: timeoutMs } = input.wait;
    result.approval = await ctx.waitForEvent('approval', event, filter ?? null, timeoutMs);
  }
  result.three = await ctx.step('three', () => count('three'));
  return result;
}
