"""Write taskhost task plugins in Python.

A task is a plain function from a JSON input to a JSON output. Decorate it
with :func:`task`; the SDK decodes the run's input, calls your function with a
:class:`Context` (logging, key-value state, config, secrets, progress),
encodes what it returns as JSON, and reports errors as retryable or fatal so
the host knows whether to try again::

    from taskhost_sdk import task

    @task
    def hello(ctx, input):
        ctx.info(f"greeting {input['name']}")
        return f"Hello, {input['name']}!"

Build the module into a component with ``componentize-py`` (see
``sdk/python/README.md`` and ``sdk/python/build-plugin.sh``) and run it with
``taskhost run plugin.wasm --input '{"name":"Ada"}'``.

Errors: raise :class:`Retryable` for a failure worth retrying and
:class:`Fatal` for one that is not. Any other exception is reported as
retryable (a transient failure is the safe guess, as with ``?`` in the Rust
SDK) and its traceback is logged at error level. Input that is not JSON (or
does not fit the input dataclass) is fatal: retrying would not change it.

The generated bindings (the ``wit_world`` package) exist only inside the
component: ``componentize-py`` generates them from ``wit/`` at build time.

Import everything at module level. ``componentize-py`` runs the app's
top-level code at build time and snapshots the interpreter; the component
carries no Python source to import from at run time, so an ``import`` first
reached inside a task fails with ``ImportError``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import traceback
import typing
from typing import Any, Callable, Optional

__all__ = ["task", "Context", "TaskError", "Retryable", "Fatal", "http"]


class TaskError(Exception):
    """Why a task failed. Raise :class:`Retryable` or :class:`Fatal`."""

    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = str(message)


class Retryable(TaskError):
    """A transient failure: the host retries per the schedule's retry policy."""

    retryable = True


class Fatal(TaskError):
    """A permanent failure (bad input, a missing resource): never retried."""

    retryable = False


# The bindings are imported here, at build time (see above). Outside a
# component (unit tests of a task function with a stand-in Context) they are
# absent and only `task` needs them.
try:
    import wit_world
    from componentize_py_types import Err
    from wit_world.imports import host as _wit_host
    from wit_world.imports.taskhost_plugin_types import (
        ChildRun,
        LogLevel,
        TaskError_Fatal,
        TaskError_Retryable,
    )
except ImportError:  # pragma: no cover - outside a component
    wit_world = None


def _call(fn: Callable[..., Any], *args: Any, error: type = Retryable) -> Any:
    """Calls a host function whose WIT result is `result<_, string>`."""
    try:
        return fn(*args)
    except Err as e:
        raise error(str(e.value)) from None


class Context:
    """What a task can see of its run and of the host.

    Attributes: ``execution_id`` (the same across retries), ``schedule_id``
    (``None`` for ad hoc runs), ``attempt`` (1 on the first attempt, 2 on the
    first retry, ...) and ``scheduled_at_ms`` (when the run was due, in
    milliseconds since the Unix epoch, UTC).
    """

    def __init__(
        self,
        execution_id: str,
        schedule_id: Optional[str],
        attempt: int,
        scheduled_at_ms: int,
    ) -> None:
        self.execution_id = execution_id
        self.schedule_id = schedule_id
        self.attempt = attempt
        self.scheduled_at_ms = scheduled_at_ms

    # Logging -----------------------------------------------------------

    def log(self, level: str, message: str) -> None:
        """Write a log line at ``level`` (trace, debug, info, warn or error);
        the host stores it with the execution."""
        _wit_host.log(LogLevel[level.upper()], str(message))

    def trace(self, message: str) -> None:
        """Log at trace level."""
        self.log("trace", message)

    def debug(self, message: str) -> None:
        """Log at debug level."""
        self.log("debug", message)

    def info(self, message: str) -> None:
        """Log at info level."""
        self.log("info", message)

    def warn(self, message: str) -> None:
        """Log at warn level."""
        self.log("warn", message)

    def error(self, message: str) -> None:
        """Log at error level."""
        self.log("error", message)

    # Config and secrets ------------------------------------------------

    def config(self, key: str) -> Optional[str]:
        """A read-only configuration value given to this run, or ``None``."""
        return _wit_host.config_get(key)

    def secret(self, name: str) -> str:
        """One of the tenant's secrets, if this run may read it (its schedule
        or request names it in ``secrets``); raises :class:`Fatal` saying why
        not. The host scrubs the value from the run's output, errors, logs,
        stdout and stderr before storing them."""
        return _call(_wit_host.secret_get, name, error=Fatal)

    # Key-value state ---------------------------------------------------

    def kv_get(self, key: str) -> Any:
        """Read a JSON value from this plugin's key-value state (``None`` if
        absent). A stored value that is not JSON raises :class:`Fatal`."""
        raw = self.kv_get_bytes(key)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError as e:
            raise Fatal(f"kv value {key!r} is not the expected JSON: {e}") from None

    def kv_set(self, key: str, value: Any) -> None:
        """Store ``value`` as JSON in this plugin's key-value state."""
        try:
            raw = json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as e:
            raise Fatal(f"kv value {key!r} is not JSON: {e}") from None
        self.kv_set_bytes(key, raw)

    def kv_get_bytes(self, key: str) -> Optional[bytes]:
        """Read raw bytes from this plugin's key-value state."""
        return _call(_wit_host.kv_get, key)

    def kv_set_bytes(self, key: str, value: bytes) -> None:
        """Store raw bytes in this plugin's key-value state."""
        _call(_wit_host.kv_set, key, bytes(value))

    def kv_delete(self, key: str) -> bool:
        """Delete a key; returns whether it existed."""
        return _call(_wit_host.kv_delete, key)

    # Workflows ---------------------------------------------------------

    def step(self, name: str, work: Callable[[], Any]) -> Any:
        """A durable step: ``work()`` runs once per execution. Its result
        (JSON) is recorded, with the kv writes made so far, before the
        workflow goes on; a later run of the execution (after a retry, a
        crash or a sleep) gets the recorded result without calling ``work``.
        Ask for the same steps in the same order on every run: a replay that
        departs from the record fails as a non-deterministic workflow."""
        recorded = _wit_host.step_get(name)
        if recorded is not None:
            return json.loads(bytes(recorded))
        value = work()
        try:
            raw = json.dumps(value, default=_to_json, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise Fatal(f"step {name!r} returned what is not JSON: {e}") from None
        _wit_host.step_done(name, raw.encode())
        return value

    def sleep(self, name: str, seconds: float) -> None:
        """A durable sleep, itself a step named ``name``: the run ends here,
        holding no worker, and the execution runs again (replaying its
        steps) once ``seconds`` have passed since the sleep was reached."""
        _wit_host.sleep(name, max(0, int(seconds * 1000)))

    def wait_for_event(
        self, name: str, event: str, filter: Any = None, timeout: float = 3600.0
    ) -> Any:
        """A step that waits for event ``event`` sent to this execution
        (``POST /v1/executions/{id}/events``) whose data has the fields of
        ``filter``: the event (``id``, ``name``, ``data``, ``received_at``),
        or ``None`` once ``timeout`` seconds have passed since the wait
        began. Meanwhile the run ends, holding no worker."""
        raw = _wit_host.wait_for_event(name, event, json.dumps(filter), max(0, int(timeout * 1000)))
        return None if raw is None else json.loads(bytes(raw))

    def spawn(self, name: str, children: list) -> list:
        """A step that makes child runs, linked to this execution and queued
        at once; their ids. Each child is a dict: ``plugin`` (an id,
        ``name@version``, ``name@alias`` or a name for its latest version),
        ``input``, ``options`` (run options as ``POST /v1/executions`` takes
        them) and ``detach`` (not cancelled with this execution). A replay
        returns the recorded ids and makes nothing again. Refused
        (``Retryable``) for an unknown plugin, a bad option, past 1,000
        children per execution or 4 levels deep, or past the queue quota."""
        runs = []
        for child in children:
            options = dict(child.get("options") or {})
            if child.get("detach"):
                options["detach"] = True
            runs.append(
                ChildRun(
                    plugin=str(child["plugin"]),
                    input=json.dumps(child.get("input"), default=_to_json).encode(),
                    options=json.dumps(options),
                )
            )
        return list(_call(_wit_host.spawn, name, runs))

    def join(self, name: str, children: list) -> list:
        """A step that waits until ``children`` (ids this execution spawned)
        have all ended — the run ends meanwhile, holding no worker — and
        returns how each ended, in order: dicts with ``id``, ``status``
        (``succeeded``, ``failed``, ``dead``, ``cancelled``), ``output`` and
        ``error``."""
        return json.loads(bytes(_wit_host.join(name, [str(c) for c in children])))

    # Progress ----------------------------------------------------------

    def progress(self, percent: int, note: Optional[str] = None) -> None:
        """Report progress (0-100, clamped) with an optional note; it also
        serves as a heartbeat for long runs."""
        _wit_host.progress(max(0, min(100, int(percent))), note)


def _input_type(fn: Callable[..., Any]) -> Any:
    """The dataclass the task's second parameter is annotated with, if any."""
    params = list(inspect.signature(fn).parameters.values())
    if len(params) < 2:
        return None
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        return None
    ty = hints.get(params[1].name)
    return ty if dataclasses.is_dataclass(ty) and isinstance(ty, type) else None


_TRACEBACK_FRAMES = 20


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _run(fn: Callable[..., Any], input_type: Any, invocation: Any) -> bytes:
    """Runs ``fn`` for one invocation; returns the output bytes or raises
    :class:`TaskError`."""
    raw = invocation.input or b"null"
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise Fatal(f"invalid input: {e}") from None
    if input_type is not None:
        if not isinstance(value, dict):
            raise Fatal(f"invalid input: expected a JSON object for {input_type.__name__}")
        try:
            value = input_type(**value)
        except TypeError as e:
            raise Fatal(f"invalid input: {e}") from None
    ctx = Context(
        invocation.execution_id,
        invocation.schedule_id,
        invocation.attempt,
        invocation.scheduled_at_ms,
    )
    try:
        output = fn(ctx, value)
    except TaskError:
        raise
    except SystemExit as e:
        # `run` returns its result; exiting has none, and retrying won't help.
        raise Fatal(f"the task called sys.exit({e.code!r}) instead of returning") from None
    except Exception as e:
        # The innermost frames only: formatting a deep traceback costs fuel.
        ctx.error("".join(traceback.format_exception(e, limit=-_TRACEBACK_FRAMES)).rstrip())
        raise Retryable(f"{type(e).__name__}: {e}") from None
    try:
        # NaN and infinities are not JSON: refuse them rather than store them.
        return json.dumps(output, default=_to_json, allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise Fatal(f"output is not JSON: {e}") from None


def task(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Export ``fn(ctx, input)`` as this component's ``run``.

    ``input`` is the run's input decoded from JSON (``None`` for an empty
    input), or an instance of the dataclass the parameter is annotated with.
    The return value is encoded as JSON (dataclasses as objects).

    ``componentize-py`` looks for a class named ``WitWorld`` in the app
    module; the decorator defines it there, so the module needs nothing else.
    Use it once per plugin.
    """
    if wit_world is None:
        raise RuntimeError("taskhost_sdk.task needs the componentize-py bindings (build with build-plugin.sh)")
    input_type = _input_type(fn)

    class WitWorld(wit_world.WitWorld):
        def run(self, invocation: Any) -> bytes:
            try:
                return _run(fn, input_type, invocation)
            except Retryable as e:
                raise Err(TaskError_Retryable(e.message)) from None
            except TaskError as e:
                raise Err(TaskError_Fatal(e.message)) from None

    sys.modules[fn.__module__].WitWorld = WitWorld  # type: ignore[attr-defined]
    return fn


# The HTTP client (``taskhost_sdk.http``), imported here so that it is loaded
# at build time whether or not the app imports it at top level. Last: it
# imports `Retryable` from this module.
from . import http  # noqa: E402
