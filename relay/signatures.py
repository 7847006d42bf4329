"""Webhook signatures, both directions (pure: the caller passes ``now``; no trio, no sockets).

Three schemes, each the convention of the senders and receivers that already exist:

* **Standard Webhooks** (https://www.standardwebhooks.com): headers ``webhook-id``, ``webhook-timestamp`` (Unix
  seconds) and ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``; the secret is written
  ``whsec_<base64 key>``. Signing uses the maintained ``standardwebhooks`` library (``Webhook.sign``), so what the
  bridge sends is what that library's ``verify`` accepts. Verifying is done here rather than with
  ``Webhook.verify``, because that reads the wall clock itself (this module takes ``now``) and answers every
  failure with one exception type, where a robot must tell a missing signature (401) from a wrong or stale one
  (403); the comparison is the library's own ``sign`` output against each ``v1,`` value, with
  :func:`hmac.compare_digest`. Several space-separated signatures are accepted (secret rotation).
* **x-signature** (the Sendbird convention): header ``x-signature`` = hex HMAC-SHA256 of the raw body, keyed with
  the secret's UTF-8 bytes. Outbound only (no timestamp, so no replay window is possible).
* **timestamp + sign** (the DingTalk and Feishu custom-robot convention): a ``timestamp`` and a ``sign``, as query
  parameters (DingTalk), headers, or top-level fields of a JSON body (Feishu); ``string_to_sign =
  f"{timestamp}\\n{secret}"`` and ``sign`` = base64 HMAC-SHA256 — DingTalk keys the HMAC with the secret and signs
  ``string_to_sign``; Feishu keys it with ``string_to_sign`` and signs nothing. Both are accepted. The timestamp
  is in milliseconds (DingTalk) or seconds (Feishu): a value above 10^11 is taken as milliseconds.

Every comparison is constant-time; the replay window (:data:`REPLAY_WINDOW`, five minutes as in Standard
Webhooks; DingTalk and Feishu allow an hour) applies in both directions of the clock. No secret appears in an
error message.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
from collections.abc import Callable
from typing import Final

from standardwebhooks import Webhook

from relay.errors import RelayError

__all__ = [
    "REPLAY_WINDOW",
    "STANDARD_SECRET_PREFIX",
    "SignatureRejected",
    "is_standard_secret",
    "standard_headers",
    "timestamp_signatures",
    "verify_standard",
    "verify_timestamp_sign",
    "x_signature",
]

#: seconds a signed request stays acceptable on either side of ``now``
REPLAY_WINDOW: Final = 300.0
#: the Standard Webhooks secret convention: ``whsec_`` + the base64 key
STANDARD_SECRET_PREFIX: Final = "whsec_"
#: a timestamp above this is in milliseconds (10^11 seconds is the year 5138)
_MILLISECONDS_FROM: Final = 10**11


class SignatureRejected(RelayError):
    """A request's signature is missing (``missing`` True: answer 401) or wrong or stale (answer 403)."""

    def __init__(self, reason: str, *, missing: bool = False) -> None:
        self.reason = reason
        self.missing = missing
        super().__init__(reason)

    @property
    def status(self) -> int:
        return 401 if self.missing else 403


def is_standard_secret(secret: str) -> bool:
    """True if ``secret`` is ``whsec_`` followed by a non-empty base64 key (the Standard Webhooks convention)."""
    if not secret.startswith(STANDARD_SECRET_PREFIX):
        return False
    try:
        return bool(base64.b64decode(secret[len(STANDARD_SECRET_PREFIX) :] + "==", validate=True))
    except (binascii.Error, ValueError):
        return False


def _standard(secret: str) -> Webhook:
    if not is_standard_secret(secret):
        raise SignatureRejected(
            "this endpoint's secret is not a Standard Webhooks secret (whsec_ followed by base64), "
            "so Standard Webhooks signatures cannot be checked; sign with timestamp + sign instead"
        )
    return Webhook(secret)


def standard_headers(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> tuple[tuple[str, str], ...]:
    """The three Standard Webhooks headers for ``body`` (``secret`` must pass :func:`is_standard_secret`)."""
    when = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    signature = _standard(secret).sign(msg_id, when, body)
    return (("webhook-id", msg_id), ("webhook-timestamp", str(timestamp)), ("webhook-signature", signature))


def x_signature(secret: str, body: bytes) -> str:
    """The ``x-signature`` value: hex HMAC-SHA256 of the raw body keyed with the secret's UTF-8 bytes."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _check_window(timestamp: float, now: float) -> None:
    if abs(now - timestamp) > REPLAY_WINDOW:
        direction = "old" if timestamp < now else "far in the future"
        raise SignatureRejected(
            f"the signature's timestamp is too {direction}: {abs(now - timestamp):.0f} s from the bridge's clock, "
            f"more than the {REPLAY_WINDOW:.0f} s allowed (check the sender's clock, and sign each request anew)"
        )


def verify_standard(secret: str, header: Callable[[str], str | None], body: bytes, *, now: float) -> str:
    """Check a Standard Webhooks signed request; return its ``webhook-id``. Raises :class:`SignatureRejected`."""
    msg_id, stamp, signatures = header("webhook-id"), header("webhook-timestamp"), header("webhook-signature")
    if not (msg_id and stamp and signatures):
        raise SignatureRejected(
            "Standard Webhooks needs the webhook-id, webhook-timestamp and webhook-signature headers", missing=True
        )
    try:
        timestamp = int(stamp.strip())
    except ValueError:
        raise SignatureRejected("webhook-timestamp must be an integer number of seconds") from None
    _check_window(timestamp, now)
    expected = standard_headers(secret, msg_id=msg_id, timestamp=timestamp, body=body)[2][1].encode()
    if not any(hmac.compare_digest(expected, candidate.encode()) for candidate in signatures.split(" ")):
        raise SignatureRejected("the webhook-signature does not match the body (wrong secret, or a changed body)")
    return msg_id


def timestamp_signatures(secret: str, timestamp: str) -> tuple[str, str]:
    """The two accepted ``sign`` values for ``timestamp``: DingTalk's and Feishu's (see the module docstring)."""
    to_sign = f"{timestamp}\n{secret}".encode()
    dingtalk = hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()
    feishu = hmac.new(to_sign, b"", hashlib.sha256).digest()
    return base64.b64encode(dingtalk).decode(), base64.b64encode(feishu).decode()


def verify_timestamp_sign(secret: str, timestamp: str | None, sign: str | None, *, now: float) -> None:
    """Check a DingTalk/Feishu ``timestamp`` + ``sign`` pair. Raises :class:`SignatureRejected`."""
    if not timestamp or not sign:
        raise SignatureRejected(
            "a timestamp and a sign are required (query parameters, headers or JSON fields)", missing=True
        )
    timestamp = timestamp.strip()
    try:
        value = int(timestamp)
    except ValueError:
        raise SignatureRejected("timestamp must be an integer (milliseconds or seconds)") from None
    _check_window(value / 1000 if value >= _MILLISECONDS_FROM else value, now)
    # a sign put in a URL without percent-encoding has had its "+" turned into " " by the query decoding
    given = sign.strip().replace(" ", "+").encode()
    if not any(hmac.compare_digest(given, candidate.encode()) for candidate in timestamp_signatures(secret, timestamp)):
        raise SignatureRejected("the sign does not match the timestamp (wrong secret)")
