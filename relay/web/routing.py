"""Route requests to handlers by method and path: exact paths and path prefixes (pure; a Router is a Handler).

The most specific route for a path decides: its exact path first, then its longest prefix. A prefix matches
at a segment boundary (``/robots`` matches ``/robots`` and ``/robots/ci``, not ``/robotsx``). Then:

* the method has a handler → that handler; HEAD without a handler of its own uses GET's (the server drops
  the body);
* OPTIONS without a handler of its own → 204 with ``Allow``;
* another method → 405 with ``Allow`` (RFC 9110 §15.5.6);
* no route for the path → 404.

Both refusals have the JSON error body of :func:`~relay.web.models.json_error`.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from relay.errors import LocalProtocolError
from relay.web import models
from relay.web.models import Handler, Request, Response

__all__ = ["Route", "Router"]


@attrs.frozen
class Route:
    """What a feature serves, for the composition root to put on the listener it belongs to: ``methods`` on
    ``path`` (exactly, or every path below it when ``prefix``) go to ``handler``."""

    methods: tuple[str, ...]
    path: str
    handler: Handler
    prefix: bool = False


@attrs.define(eq=False)
class _Route:
    path: str
    prefix: bool
    handlers: dict[str, Handler] = attrs.Factory(dict)

    def allowed(self) -> str:
        methods = set(self.handlers) | {"OPTIONS"}
        if "GET" in methods:
            methods.add("HEAD")
        return ", ".join(sorted(methods))


@attrs.define(eq=False)
class Router:
    """Maps (method, path or path prefix) to a handler, and answers 404 and 405 itself."""

    _exact: dict[str, _Route] = attrs.field(factory=dict, init=False)
    _prefixes: list[_Route] = attrs.field(factory=list, init=False)  # longest first

    def add(self, methods: str | Iterable[str], path: str, handler: Handler) -> None:
        """Route ``methods`` ("GET", or several) on exactly ``path`` to ``handler``."""
        route = self._exact.setdefault(path, _Route(path, prefix=False))
        self._register(route, methods, handler)

    def add_prefix(self, methods: str | Iterable[str], prefix: str, handler: Handler) -> None:
        """Route ``methods`` on ``prefix`` and every path below it (``/robots`` → ``/robots/<name>``)."""
        prefix = prefix.rstrip("/") or "/"
        route = next((r for r in self._prefixes if r.path == prefix), None)
        if route is None:
            route = _Route(prefix, prefix=True)
            self._prefixes.append(route)
            self._prefixes.sort(key=lambda r: len(r.path), reverse=True)
        self._register(route, methods, handler)

    def include(self, routes: Iterable[Route]) -> None:
        """Add every route of a feature (see :class:`Route`)."""
        for route in routes:
            if route.prefix:
                self.add_prefix(route.methods, route.path, route.handler)
            else:
                self.add(route.methods, route.path, route.handler)

    @staticmethod
    def _register(route: _Route, methods: str | Iterable[str], handler: Handler) -> None:
        for name in [methods] if isinstance(methods, str) else methods:
            method = name.upper()
            if method in route.handlers:
                kind = "prefix" if route.prefix else "path"
                raise LocalProtocolError(f"{method} on {kind} {route.path!r} is routed twice")
            route.handlers[method] = handler

    def match(self, path: str) -> _Route | None:
        route = self._exact.get(path)
        if route is not None:
            return route
        for candidate in self._prefixes:
            base = candidate.path
            if base in {"/", path} or path.startswith(base + "/"):
                return candidate
        return None

    async def __call__(self, request: Request) -> Response:
        route = self.match(request.path)
        if route is None:
            return models.json_error(404, f"no route for {request.path}")
        handler = route.handlers.get(request.method)
        if handler is None and request.method == "HEAD":
            handler = route.handlers.get("GET")
        if handler is not None:
            return await handler(request)
        if request.method == "OPTIONS":
            return Response(204, (("allow", route.allowed()),))
        return models.json_error(
            405, f"{request.method} is not allowed on {request.path}", headers=(("allow", route.allowed()),)
        )
