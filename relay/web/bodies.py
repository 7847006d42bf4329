"""Reading request bodies that must be JSON: the checks every JSON endpoint makes, with their statuses (pure).

* a Content-Type other than ``application/json`` (or ``application/<x>+json``) → 415, unless the caller
  reads the body whatever it is labelled (some mirai SDKs label JSON ``text/plain``);
* a body that is not JSON → 400;
* JSON that is not an object, where an object is required → 422 (well-formed, but not what was asked for).

Each refusal is a :class:`~relay.web.models.RequestRejected`, which the server answers with a JSON error body.
"""

from __future__ import annotations

from typing import Any

from relay import fastjson
from relay.web.models import Request, RequestRejected

__all__ = ["json_body", "json_object", "media_type"]


def media_type(request: Request) -> str:
    """The request's media type, lower-case, without parameters ("" when there is no Content-Type)."""
    value = request.header("content-type") or ""
    return value.partition(";")[0].strip().lower()


def _is_json_type(kind: str) -> bool:
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def json_body(request: Request, *, require_content_type: bool = True) -> Any:
    """The body parsed as JSON (any JSON value). 415 for another Content-Type, 400 for a body that is not JSON."""
    if require_content_type and not _is_json_type(media_type(request)):
        raise RequestRejected(415, "the body must be JSON, sent with Content-Type: application/json")
    try:
        return fastjson.loads(request.body)
    except ValueError:
        raise RequestRejected(400, "the body is not valid JSON") from None


def json_object(request: Request, *, require_content_type: bool = True) -> dict[str, Any]:
    """The body as a JSON object: :func:`json_body`, then 422 for any other JSON value."""
    value = json_body(request, require_content_type=require_content_type)
    if not isinstance(value, dict):
        raise RequestRejected(422, f"the body must be a JSON object, not {_json_kind(value)}")
    return value


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"
