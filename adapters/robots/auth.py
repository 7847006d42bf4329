"""Which signature a robot's request carries, and whether it holds (pure: ``now`` is passed in).

A robot accepts what its ``signature`` setting allows (default ``"any"``):

* **Standard Webhooks**: the ``webhook-id``/``webhook-timestamp``/``webhook-signature`` headers, with a
  ``whsec_`` secret. The ``webhook-id`` is returned: a repeated one is posted once.
* **timestamp + sign** (DingTalk, Feishu): ``timestamp`` and ``sign`` as query parameters, headers, or top-level
  fields of the JSON body (Feishu puts them there).
* ``"none"``: nothing is checked (for a listener nobody else can reach).

With ``"any"``, a request with a ``webhook-signature`` header is checked as Standard Webhooks, any other as
timestamp + sign. No signature at all → 401; a wrong or stale one → 403 (see :class:`relay.signatures.
SignatureRejected`). Both schemes allow :data:`relay.signatures.REPLAY_WINDOW` (5 minutes) of clock difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relay.config import RobotConfig, RobotSignature
from relay.signatures import SignatureRejected, verify_standard, verify_timestamp_sign
from relay.web.models import Request

__all__ = ["verify_request"]


def _field(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str | int):
        return str(value)
    return None


def verify_request(robot: RobotConfig, request: Request, fields: Mapping[str, Any], *, now: float) -> str | None:
    """Check ``request`` for ``robot``; return its ``webhook-id`` (Standard Webhooks) or None.

    ``fields`` is the parsed JSON body when it was an object (else empty). Raises :class:`SignatureRejected`.
    """
    mode = robot.signature
    if mode is RobotSignature.NONE:
        return None
    standard = request.header("webhook-signature") is not None
    if mode is RobotSignature.STANDARD or (mode is RobotSignature.ANY and standard):
        return verify_standard(robot.secret, request.header, request.body, now=now)
    timestamp = request.query_value("timestamp") or request.header("timestamp") or _field(fields.get("timestamp"))
    sign = request.query_value("sign") or request.header("sign") or _field(fields.get("sign"))
    if mode is RobotSignature.ANY and not (timestamp or sign):
        raise SignatureRejected(
            "this robot needs a signature: Standard Webhooks headers (webhook-id, webhook-timestamp, "
            "webhook-signature) or a timestamp and a sign (DingTalk/Feishu style)",
            missing=True,
        )
    verify_timestamp_sign(robot.secret, timestamp, sign, now=now)
    return None
