"""The Python test plugin: its input's `mode` selects a behaviour.

- {"mode": "count"}: increments the kv counter `count` and returns it.
- {"mode": "retry", "fail_until_attempt": N}: fails (retryably) while the
  attempt is below N, then returns {"attempt": attempt}.
- {"mode": "fatal"}: fails fatally.
- {"mode": "exit"}: calls sys.exit(3) (the SDK makes that a fatal failure).
- {"mode": "raise"}: raises an ordinary exception (reported as retryable).
- {"mode": "loop"}: loops forever (stopped by fuel or the timeout).
- {"mode": "memhog"}: allocates 1 MiB at a time until the memory limit.
- {"mode": "context"}: returns what the Context shows (invocation fields,
  config `greeting`), exercising kv bytes/delete, progress and logging.
- {"mode": "secret", "name": NAME}: returns the length of a secret.
- {"mode": "http", "url": URL, "method"?: M, "body"?: TEXT, "headers"?: {..},
  "max_redirects"?: N, "catch"?: BOOL}: sends the request with
  `taskhost_sdk.http` and returns {"status", "body" (text), "url",
  "content_type"}. A failed request raises `HttpError` (retryable), or with
  "catch": true returns {"error": TEXT, "retryable": BOOL}.
- {"mode": "workflow", "fail_two_once"?: BOOL, "sleep_ms"?: N, "wait"?:
  {"event", "filter", "timeout_ms"}}: three durable steps counting their
  runs in kv (`one`, `two`, `three`); step two fails on attempt 1 if asked;
  a durable sleep `nap`, then a wait for the event (`approval`, in the
  output), between two and three.
- {"mode": "fanout", "count": N}: spawns N children of this plugin
  (`{"mode": "square", "x": i}`), joins them and returns the sum of their
  outputs.
- {"mode": "square", "x": X}: returns X * X.
- anything else (or no input): returns "Hello from Python!".
"""
import sys

from taskhost_sdk import Fatal, Retryable, http, task


@task
def run(ctx, input):
    mode = input.get("mode") if isinstance(input, dict) else None
    if mode == "count":
        count = (ctx.kv_get("count") or 0) + 1
        ctx.kv_set("count", count)
        return count
    if mode == "retry":
        until = int(input.get("fail_until_attempt", 2))
        if ctx.attempt < until:
            raise Retryable(f"attempt {ctx.attempt} fails until attempt {until}")
        return {"attempt": ctx.attempt}
    if mode == "exit":
        sys.exit(3)
    if mode == "fatal":
        raise Fatal("do not try again")
    if mode == "raise":
        return {}["missing"]
    if mode == "loop":
        x = 0
        while True:
            x += 1
    if mode == "memhog":
        hoard = []
        while True:
            hoard.append(bytearray(b"\xa5" * (1 << 20)))
    if mode == "workflow":
        return workflow(ctx, input)
    if mode == "square":
        return input["x"] * input["x"]
    if mode == "fanout":
        children = [
            {"plugin": input["plugin"], "input": {"mode": "square", "x": i}}
            for i in range(int(input["count"]))
        ]
        ids = ctx.spawn("fan-out", children)
        return sum(o["output"] for o in ctx.join("join", ids))
    if mode == "context":
        ctx.kv_set_bytes("scratch", b"temp")
        deleted = ctx.kv_delete("scratch")
        deleted_again = ctx.kv_delete("scratch")
        ctx.progress(50, "half way")
        ctx.warn("a warning")
        print("to stdout")
        return {
            "deleted": deleted,
            "deleted_again": deleted_again,
            "greeting": ctx.config("greeting"),
            "execution_id": ctx.execution_id,
            "schedule_id": ctx.schedule_id,
            "attempt": ctx.attempt,
            "scheduled_at_ms": ctx.scheduled_at_ms,
        }
    if mode == "secret":
        return {"length": len(ctx.secret(input["name"]))}
    if mode == "http":
        try:
            response = http.request(
                input.get("method", "GET"),
                input["url"],
                input.get("headers"),
                input.get("body"),
                max_redirects=int(input.get("max_redirects", 5)),
            )
        except http.HttpError as e:
            if input.get("catch"):
                return {"error": e.message, "retryable": e.retryable}
            raise
        return {
            "status": response.status,
            "body": response.text(),
            "url": response.url,
            "content_type": response.header("content-type"),
        }
    return "Hello from Python!"


def workflow(ctx, input):
    def count(key):
        n = (ctx.kv_get(key) or 0) + 1
        ctx.kv_set(key, n)
        return n

    def two():
        n = count("two")
        if input.get("fail_two_once") and ctx.attempt == 1:
            raise Retryable("step two fails on the first attempt")
        return n

    result = {"one": ctx.step("one", lambda: count("one")), "two": ctx.step("two", two)}
    if input.get("sleep_ms"):
        ctx.sleep("nap", input["sleep_ms"] / 1000)
    wait = input.get("wait")
    if wait:
        result["approval"] = ctx.wait_for_event(
            "approval", wait["event"], wait.get("filter"), wait["timeout_ms"] / 1000
        )
    result["three"] = ctx.step("three", lambda: count("three"))
    return result
