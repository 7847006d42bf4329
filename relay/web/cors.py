"""Cross-origin resource sharing for browsers calling the bridge's HTTP API (pure; wraps a Handler).

mirai-api-http's http adapter has a ``cors`` list (default ``["*"]``) and installs Ktor's CORS plugin with it:
each entry is a host allowed over http and https, ``*`` allows every origin, OPTIONS is allowed, any content
type may be sent, and a preflight is cached for 24 hours. :func:`with_cors` behaves the same way:

* no ``Origin`` header, or an ``Origin`` naming this server (``Host``) → the request passes untouched;
* an allowed origin → the answer carries ``Access-Control-Allow-Origin`` (``*`` when every origin is
  allowed, else the origin itself and ``Vary: Origin``); a preflight (OPTIONS with
  ``Access-Control-Request-Method``) is answered 204 here, with the allowed methods, the requested headers
  and ``Access-Control-Max-Age``, if the method is allowed (else 403);
* any other origin → 403 with a JSON error body, as Ktor answers (not just a missing header: the handler
  does not run).

An entry is either a host (``example.com``, ``example.com:8080``: http and https both) or a whole origin
(``https://example.com``); comparison ignores case.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from relay.web import models
from relay.web.models import Handler, Request, Response

__all__ = ["ANY_ORIGIN", "DEFAULT_MAX_AGE", "DEFAULT_METHODS", "origin_allowed", "with_cors"]

#: the entry that allows every origin
ANY_ORIGIN: Final = "*"
#: Ktor's defaults plus OPTIONS, which mirai-api-http adds
DEFAULT_METHODS: Final = ("GET", "POST", "HEAD", "OPTIONS")
#: mirai-api-http's ``maxAgeInSeconds = 86_400``
DEFAULT_MAX_AGE: Final = 86_400


def origin_allowed(origin: str, allowed_origins: Iterable[str]) -> bool:
    """Whether ``origin`` (an ``Origin`` header value) matches one of ``allowed_origins``."""
    origin = origin.strip().lower()
    scheme, _, authority = origin.partition("://")
    for allowed in allowed_origins:
        entry = allowed.strip().lower().rstrip("/")
        if entry == ANY_ORIGIN:
            return True
        if "://" in entry:
            if entry == origin:
                return True
        elif scheme in {"http", "https"} and authority == entry:
            return True
    return False


def _same_origin(request: Request, origin: str) -> bool:
    host = request.header("host")
    return host is not None and urlsplit(origin.strip().lower()).netloc == host.strip().lower()


def with_cors(
    handler: Handler,
    *,
    allowed_origins: tuple[str, ...],
    allowed_methods: tuple[str, ...] = DEFAULT_METHODS,
    max_age: int = DEFAULT_MAX_AGE,
) -> Handler:
    """``handler`` behind the CORS rules of the module docstring."""
    methods = tuple(method.upper() for method in allowed_methods)
    any_origin = ANY_ORIGIN in allowed_origins

    async def cors_handler(request: Request) -> Response:
        origin = request.header("origin")
        if origin is None or _same_origin(request, origin):
            return await handler(request)
        if not origin_allowed(origin, allowed_origins):
            return models.json_error(403, "cross-origin requests from this origin are not allowed")
        allow_origin = (
            (("access-control-allow-origin", "*"),)
            if any_origin
            else (
                ("access-control-allow-origin", origin),
                ("vary", "Origin"),
            )
        )
        requested_method = request.header("access-control-request-method")
        if request.method == "OPTIONS" and requested_method is not None:
            if requested_method.strip().upper() not in methods:
                return models.json_error(403, f"cross-origin {requested_method} requests are not allowed")
            headers = [*allow_origin, ("access-control-allow-methods", ", ".join(methods))]
            requested_headers = request.header("access-control-request-headers")
            if requested_headers:
                headers.append(("access-control-allow-headers", requested_headers))
            headers.append(("access-control-max-age", str(max_age)))
            return Response(204, tuple(headers))
        try:
            response = await handler(request)
        except models.RequestRejected as exc:  # the browser may read the refusal too
            response = exc.response()
        return Response(response.status, (*response.headers, *allow_origin), response.body)

    return cors_handler
