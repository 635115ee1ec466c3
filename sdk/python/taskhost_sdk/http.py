"""A small synchronous HTTP client for plugins, on ``wasi:http/outgoing-handler``.

The host sends the request (it speaks HTTP and TLS; this module only fills in
the request's parts and reads the response's), so a plugin carries no HTTP or
TLS code. A run reaches only the hosts its schedule or run grants; a refused
request raises :class:`HttpError` whose text says why (``taskhost refused the
request: ...``)::

    from taskhost_sdk import Retryable, http, task

    @task
    def notify(ctx, input):
        response = http.post("https://hooks.example.com/notify", json={"text": "done"})
        if not response.ok:
            raise Retryable(f"got {response.status}")
        return response.json()

:class:`HttpError` is a :class:`~taskhost_sdk.Retryable`: a request that got
no response (refused, DNS, connect, timeout), left unhandled, fails the run
retryably, as ``?`` on an ``HttpError`` does in the Rust SDK. A response with
any status (404, 500, ...) is a :class:`Response`, not an error; use
:meth:`Response.raise_for_status` to turn a non-2xx one into an error.

Redirects (301, 302, 303, 307, 308 with a ``Location``) are followed, up to
``max_redirects`` (5 by default); each one is a new request the host checks
against the grant again. ``Authorization``, ``Cookie`` and
``Proxy-Authorization`` are dropped when a redirect leaves the origin; a 303,
or a 301/302 after a POST, becomes a GET without a body.
"""

from __future__ import annotations

import json as _json
import urllib.parse
from typing import Any, Iterable, List, Mapping, Optional, Tuple, Union

from . import Retryable

# The bindings exist only inside a component (see the package docstring);
# imported here, at build time, because nothing can be imported at run time.
try:
    from componentize_py_types import Err, Ok
    from wit_world.imports import outgoing_handler as _handler
    from wit_world.imports import wasi_http_types as _types
    from wit_world.imports.streams import StreamError_Closed
except ImportError:  # pragma: no cover - outside a component
    _handler = None

__all__ = ["HttpError", "Response", "request", "get", "post", "put", "delete"]

#: Bytes written to the request body per call (the stream's budget).
WRITE_CHUNK = 4096
#: Bytes asked for per read of the response body.
READ_CHUNK = 64 * 1024

_REDIRECTS = (301, 302, 303, 307, 308)
_CREDENTIALS = ("authorization", "cookie", "proxy-authorization")

Headers = Union[Mapping[str, str], Iterable[Tuple[str, str]], None]


class HttpError(Retryable):
    """A request that failed: refused by the host's policy, or no response
    (DNS, connect, timeout, a broken body). Retryable, as in the Rust SDK."""


class Response:
    """A response, its body read whole.

    ``status`` (int), ``headers`` (a list of ``(name, value)`` with names in
    lower case, in the order received), ``body`` (bytes) and ``url`` (the URL
    that answered, after redirects).
    """

    def __init__(self, status: int, headers: List[Tuple[str, str]], body: bytes, url: str) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.url = url

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.url} ({len(self.body)} bytes)>"

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The first value of header ``name`` (case-insensitive), or ``default``."""
        name = name.lower()
        for n, v in self.headers:
            if n == name:
                return v
        return default

    def header_all(self, name: str) -> List[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        name = name.lower()
        return [v for n, v in self.headers if n == name]

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    def raise_for_status(self) -> "Response":
        """This response if its status is 2xx, else raises :class:`HttpError`
        naming the status."""
        if not self.ok:
            raise HttpError(f"{self.url} answered {self.status}")
        return self

    def text(self, encoding: str = "utf-8") -> str:
        """The body as text (invalid bytes replaced)."""
        return self.body.decode(encoding, errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; raises :class:`HttpError` if it is not."""
        try:
            return _json.loads(self.body)
        except ValueError as e:
            raise HttpError(f"invalid JSON: {e}") from None


def request(
    method: str,
    url: str,
    headers: Headers = None,
    body: Union[bytes, bytearray, str, None] = None,
    *,
    json: Any = None,
    max_redirects: int = 5,
) -> Response:
    """Sends a request and reads the whole response.

    ``headers``: a dict or a list of ``(name, value)`` pairs. ``body``: bytes,
    or a str sent as UTF-8. ``json``: a value sent as a JSON body with
    ``content-type: application/json`` (instead of ``body``).
    ``max_redirects``: how many redirects to follow (0: none; the 3xx
    response is returned). Raises :class:`HttpError` when no response came.
    """
    method = method.upper()
    pairs = _header_list(headers)
    if json is not None:
        if body is not None:
            raise ValueError("give body or json, not both")
        try:
            body = _json.dumps(json, separators=(",", ":")).encode()
        except (TypeError, ValueError) as e:
            raise HttpError(f"the JSON body is not JSON: {e}") from None
        if not any(n == "content-type" for n, _ in pairs):
            pairs.append(("content-type", "application/json"))
    if body is None:
        data = b""
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = bytes(body)
    left = max(0, int(max_redirects))
    while True:
        response = _send_once(method, url, pairs, data)
        location = response.header("location")
        if response.status not in _REDIRECTS or location is None or left == 0:
            return response
        left -= 1
        target = _resolve(url, location)
        # Credentials go to the origin they were meant for only.
        if _origin(target) != _origin(url):
            pairs = [(n, v) for n, v in pairs if n not in _CREDENTIALS]
        url = target
        # 303 (and, as browsers do, 301/302 after a POST) become GETs.
        if response.status == 303 or (response.status in (301, 302) and method == "POST"):
            method = "GET"
            data = b""
            pairs = [(n, v) for n, v in pairs if n != "content-type"]


def get(url: str, headers: Headers = None, **kwargs: Any) -> Response:
    """A GET request; see :func:`request`."""
    return request("GET", url, headers, **kwargs)


def post(url: str, body: Union[bytes, bytearray, str, None] = None, headers: Headers = None, **kwargs: Any) -> Response:
    """A POST request; see :func:`request` (``json=`` for a JSON body)."""
    return request("POST", url, headers, body, **kwargs)


def put(url: str, body: Union[bytes, bytearray, str, None] = None, headers: Headers = None, **kwargs: Any) -> Response:
    """A PUT request; see :func:`request`."""
    return request("PUT", url, headers, body, **kwargs)


def delete(url: str, headers: Headers = None, **kwargs: Any) -> Response:
    """A DELETE request; see :func:`request`."""
    return request("DELETE", url, headers, **kwargs)


# Helpers -----------------------------------------------------------------


def _header_list(headers: Headers) -> List[Tuple[str, str]]:
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(n).lower(), v if isinstance(v, str) else bytes(v).decode("latin-1")) for n, v in items]


def _split_url(url: str) -> Tuple[str, str, str]:
    """(scheme, authority, path with query) of an absolute http(s) URL."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.netloc:
        raise HttpError(f"{url!r} is not an absolute http(s) URL")
    path = parts.path if parts.path.startswith("/") else "/" + parts.path
    if parts.query:
        path += "?" + parts.query
    return scheme, parts.netloc, path


def _origin(url: str) -> str:
    """The scheme and authority of an absolute URL, lower-cased."""
    try:
        scheme, authority, _ = _split_url(url)
    except HttpError:
        return ""
    return f"{scheme}://{authority.lower()}"


def _resolve(base: str, location: str) -> str:
    """``location`` made absolute against ``base``."""
    return urllib.parse.urljoin(base, location)


def _method(name: str) -> Any:
    known = {
        "GET": _types.Method_Get,
        "HEAD": _types.Method_Head,
        "POST": _types.Method_Post,
        "PUT": _types.Method_Put,
        "DELETE": _types.Method_Delete,
        "OPTIONS": _types.Method_Options,
        "PATCH": _types.Method_Patch,
        "CONNECT": _types.Method_Connect,
        "TRACE": _types.Method_Trace,
    }
    cls = known.get(name)
    return cls() if cls is not None else _types.Method_Other(name)


def _describe(code: Any) -> str:
    """The text of a wasi:http error-code (the host's message if it gave one)."""
    if isinstance(code, _types.ErrorCode_InternalError) and code.value:
        return code.value
    name = type(code).__name__.removeprefix("ErrorCode_")
    value = getattr(code, "value", None)
    return f"HTTP error: {name}" + (f"({value!r})" if value is not None else "")


def _send_once(method: str, url: str, headers: List[Tuple[str, str]], body: bytes) -> Response:
    if _handler is None:
        raise RuntimeError("taskhost_sdk.http needs the componentize-py bindings (build with build-plugin.sh)")
    scheme, authority, path = _split_url(url)
    try:
        fields = _types.Fields.from_list([(n, v.encode("latin-1", errors="replace")) for n, v in headers])
    except Err as e:
        raise HttpError(f"invalid header: {type(e.value).__name__.removeprefix('HeaderError_')}") from None
    outgoing = _types.OutgoingRequest(fields)

    def setting(what: str, fn: Any, value: Any) -> None:
        try:
            fn(value)
        except Err:
            raise HttpError(f"invalid request {what}") from None

    setting("method", outgoing.set_method, _method(method))
    setting("scheme", outgoing.set_scheme, _types.Scheme_Https() if scheme == "https" else _types.Scheme_Http())
    setting("authority", outgoing.set_authority, authority)
    setting("path", outgoing.set_path_with_query, path)
    try:
        out_body = outgoing.body()
    except Err:
        raise HttpError("invalid request body") from None
    try:
        future = _handler.handle(outgoing, None)
    except Err as e:
        raise HttpError(_describe(e.value)) from None

    with future:
        # The host reads the body before it sends the request.
        try:
            stream = out_body.write()
        except Err:
            raise HttpError("invalid request body stream") from None
        with stream:
            for i in range(0, len(body), WRITE_CHUNK):
                try:
                    stream.blocking_write_and_flush(body[i : i + WRITE_CHUNK])
                except Err as e:
                    raise HttpError(f"sending the body failed: {_stream_error(e.value)}") from None
        try:
            _types.OutgoingBody.finish(out_body, None)
        except Err as e:
            raise HttpError(_describe(e.value)) from None

        while True:
            result = future.get()
            if result is not None:
                break
            with future.subscribe() as pollable:
                pollable.block()

    if not isinstance(result, Ok):
        raise HttpError("the response was already taken")
    if not isinstance(result.value, Ok):
        raise HttpError(_describe(result.value.value))

    with result.value.value as response:
        status = response.status()
        with response.headers() as fields:
            entries = [(n, v.decode("utf-8", errors="replace")) for n, v in fields.entries()]
        try:
            incoming = response.consume()
        except Err:
            raise HttpError("the response body was already taken") from None
        chunks = []
        try:
            stream = incoming.stream()
        except Err:
            raise HttpError("the response body stream was already taken") from None
        with stream:
            while True:
                try:
                    chunks.append(stream.blocking_read(READ_CHUNK))
                except Err as e:
                    if isinstance(e.value, StreamError_Closed):
                        break
                    raise HttpError(f"reading the response failed: {_stream_error(e.value)}") from None
        with _types.IncomingBody.finish(incoming):
            pass
    return Response(status, entries, b"".join(chunks), url)


def _stream_error(err: Any) -> str:
    if isinstance(err, StreamError_Closed):
        return "the stream is closed"
    with err.value as e:
        return e.to_debug_string()
