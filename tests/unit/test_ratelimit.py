"""Pure tests of the rate-limit state machine (adapters/discord/rest/ratelimit.py): no trio, no sockets."""

from __future__ import annotations

import json
import logging
import math

import pytest

from adapters.discord.rest.ratelimit import RateLimiter, Reservation
from relay.errors import CloudflareBanned, ConfigError, HTTPError, InvalidRequestGuard, RateLimitedTooLong

SEND = "POST /channels/{channel_id}/messages"
HISTORY = "GET /channels/{channel_id}/messages"
CHAN_A = "channel_id=1"
CHAN_B = "channel_id=2"


def headers(limit: int, remaining: int, reset_after: float, bucket: str = "abc") -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset-After": str(reset_after),
        "X-RateLimit-Bucket": bucket,
    }


def body_429(retry_after: float, is_global: bool = False) -> bytes:
    return json.dumps(
        {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
    ).encode()


def granted(limiter: RateLimiter, route: str, major: str, now: float) -> Reservation:
    reservation = limiter.reserve(route, major, now)
    assert reservation.granted, reservation
    return reservation


def test_unknown_bucket_allows_one_request_in_flight() -> None:
    limiter = RateLimiter()
    first = granted(limiter, SEND, CHAN_A, 0.0)
    assert limiter.reserve(SEND, CHAN_A, 0.0).delay == math.inf
    assert limiter.update(first, 200, headers(5, 4, 5.0), b"{}", 0.1) is False
    for _ in range(4):
        granted(limiter, SEND, CHAN_A, 0.1)
    blocked = limiter.reserve(SEND, CHAN_A, 0.1)
    assert blocked.delay == pytest.approx(5.0)


def test_window_resets_after_reset_after() -> None:
    limiter = RateLimiter()
    r = granted(limiter, SEND, CHAN_A, 0.0)
    limiter.update(r, 200, headers(2, 0, 3.0), b"{}", 1.0)
    assert limiter.reserve(SEND, CHAN_A, 2.0).delay == pytest.approx(2.0)
    granted(limiter, SEND, CHAN_A, 4.0)
    granted(limiter, SEND, CHAN_A, 4.0)
    # Both in flight, window budget spent, no reset time known yet: wait for an answer.
    assert limiter.reserve(SEND, CHAN_A, 4.0).delay == math.inf


def test_in_flight_requests_count_against_remaining() -> None:
    limiter = RateLimiter()
    r = granted(limiter, SEND, CHAN_A, 0.0)
    limiter.update(r, 200, headers(5, 4, 5.0), b"{}", 0.0)
    a = granted(limiter, SEND, CHAN_A, 0.0)
    granted(limiter, SEND, CHAN_A, 0.0)
    # The answer to ``a`` says 3 left, but one request is still in flight: only 2 may start.
    limiter.update(a, 200, headers(5, 3, 4.9), b"{}", 0.1)
    granted(limiter, SEND, CHAN_A, 0.1)
    granted(limiter, SEND, CHAN_A, 0.1)
    assert not limiter.reserve(SEND, CHAN_A, 0.1).granted


def test_major_parameters_are_independent() -> None:
    limiter = RateLimiter()
    r = granted(limiter, SEND, CHAN_A, 0.0)
    limiter.update(r, 200, headers(1, 0, 5.0), b"{}", 0.0)
    assert not limiter.reserve(SEND, CHAN_A, 0.0).granted
    r_b = granted(limiter, SEND, CHAN_B, 0.0)
    limiter.update(r_b, 200, headers(1, 0, 5.0), b"{}", 0.0)
    assert limiter.bucket_id(SEND, CHAN_A) != limiter.bucket_id(SEND, CHAN_B)


def test_routes_with_the_same_bucket_hash_share_one_limit() -> None:
    limiter = RateLimiter()
    r1 = granted(limiter, SEND, CHAN_A, 0.0)
    limiter.update(r1, 200, headers(3, 2, 5.0, bucket="shared"), b"{}", 0.0)
    r2 = granted(limiter, HISTORY, CHAN_A, 0.0)
    limiter.update(r2, 200, headers(3, 1, 5.0, bucket="shared"), b"{}", 0.0)
    assert limiter.bucket_id(SEND, CHAN_A) == limiter.bucket_id(HISTORY, CHAN_A)
    granted(limiter, SEND, CHAN_A, 0.0)
    assert not limiter.reserve(HISTORY, CHAN_A, 0.0).granted
    assert not limiter.reserve(SEND, CHAN_A, 0.0).granted


def test_route_without_bucket_headers_is_only_globally_limited() -> None:
    limiter = RateLimiter()
    r = granted(limiter, "GET /gateway/bot", "-", 0.0)
    limiter.update(r, 200, {}, b"{}", 0.0)
    for _ in range(10):
        granted(limiter, "GET /gateway/bot", "-", 0.0)


def test_global_limit_holds_slots_until_one_second_after_the_answer() -> None:
    limiter = RateLimiter(global_limit=3)
    reservations = []
    for channel in range(3):
        r = granted(limiter, "GET /channels/{channel_id}", f"channel_id={channel}", 0.0)
        reservations.append(r)
    # All three slots in flight: nothing more until an answer.
    assert limiter.reserve("GET /channels/{channel_id}", "channel_id=9", 0.0).delay == math.inf
    limiter.update(reservations[0], 200, {}, b"{}", 0.5)
    assert limiter.reserve("GET /channels/{channel_id}", "channel_id=9", 0.5).delay == pytest.approx(1.0)
    granted(limiter, "GET /channels/{channel_id}", "channel_id=9", 1.5)


def test_bucket_429_is_obeyed() -> None:
    limiter = RateLimiter()
    r = granted(limiter, SEND, CHAN_A, 0.0)
    limiter.update(r, 200, headers(5, 4, 5.0), b"{}", 0.0)
    r = granted(limiter, SEND, CHAN_A, 0.0)
    retry = limiter.update(r, 429, {**headers(5, 0, 7.0), "X-RateLimit-Scope": "user"}, body_429(7.0), 0.0)
    assert retry is True
    assert limiter.reserve(SEND, CHAN_A, 1.0).delay == pytest.approx(6.0)
    granted(limiter, SEND, CHAN_A, 7.0)
    # Other buckets are not affected.
    granted(limiter, SEND, CHAN_B, 1.0)


def test_sub_limit_429_blocks_even_when_headers_say_tokens_are_left() -> None:
    limiter = RateLimiter()
    r = granted(limiter, SEND, CHAN_A, 0.0)
    retry = limiter.update(r, 429, {**headers(5, 3, 1.0), "X-RateLimit-Scope": "user"}, body_429(30.0), 0.0)
    assert retry
    assert limiter.reserve(SEND, CHAN_A, 2.0).delay == pytest.approx(28.0)


def test_global_429_blocks_every_bucket() -> None:
    limiter = RateLimiter()
    r = granted(limiter, SEND, CHAN_A, 0.0)
    retry = limiter.update(
        r, 429, {"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"}, body_429(2.0, is_global=True), 0.0
    )
    assert retry
    assert limiter.reserve("GET /users/@me", "-", 0.5).delay == pytest.approx(1.5)
    granted(limiter, "GET /users/@me", "-", 2.0)


def test_non_json_429_stops_everything() -> None:
    limiter = RateLimiter()
    r = granted(limiter, SEND, CHAN_A, 0.0)
    with pytest.raises(CloudflareBanned):
        limiter.update(r, 429, {"Content-Type": "text/html"}, b"<html>Error 1015</html>", 0.0)
    with pytest.raises(CloudflareBanned):
        limiter.reserve("GET /users/@me", "-", 60.0)
    assert limiter.statistics(60.0).cloudflare_banned_until is not None


def test_cloudflare_ban_with_retry_after_lifts_after_it() -> None:
    limiter = RateLimiter()
    r = granted(limiter, SEND, CHAN_A, 0.0)
    with pytest.raises(CloudflareBanned):
        limiter.update(r, 429, {"Retry-After": "120"}, b"", 0.0)
    with pytest.raises(CloudflareBanned):
        limiter.reserve(SEND, CHAN_A, 119.0)
    granted(limiter, SEND, CHAN_A, 121.0)


def test_waits_longer_than_max_wait_raise() -> None:
    limiter = RateLimiter(max_wait=10.0)
    r = granted(limiter, SEND, CHAN_A, 0.0)
    with pytest.raises(RateLimitedTooLong) as info:
        limiter.update(r, 429, {"X-RateLimit-Scope": "user"}, body_429(600.0), 0.0)
    assert info.value.retry_after == 600.0
    with pytest.raises(RateLimitedTooLong):
        limiter.reserve(SEND, CHAN_A, 1.0)
    r_b = granted(limiter, SEND, CHAN_B, 0.0)
    limiter.update(r_b, 200, headers(1, 0, 3600.0), b"{}", 0.0)
    with pytest.raises(RateLimitedTooLong):
        limiter.reserve(SEND, CHAN_B, 1.0)


def test_invalid_request_guard_warns_then_refuses(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RateLimiter(invalid_warn=50, invalid_refuse=100)
    route = "GET /guilds/{guild_id}"
    now = 0.0
    with caplog.at_level(logging.WARNING, logger="adapters.discord.rest.ratelimit"):
        for i in range(100):
            now = i * 0.5
            r = granted(limiter, route, "guild_id=1", now)
            limiter.update(r, 403, headers(1000, 999, 1.0), b'{"code": 50013, "message": "Missing Permissions"}', now)
    warnings = [rec for rec in caplog.records if "invalid" in rec.getMessage()]
    assert len(warnings) == 1  # warned once, when crossing 50
    with pytest.raises(InvalidRequestGuard) as info:
        limiter.reserve(route, "guild_id=1", now)
    assert info.value.count == 100
    # The window slides: ten minutes after the first failures, requests flow again.
    granted(limiter, route, "guild_id=1", 600.0 + 30.0)


def test_default_guard_trips_before_discords_ban_threshold() -> None:
    limiter = RateLimiter()
    r = granted(limiter, SEND, CHAN_A, 0.0)
    limiter.update(r, 200, headers(1_000_000, 999_999, 1000.0), b"{}", 0.0)
    refused_at = None
    for i in range(10_000):
        try:
            r = limiter.reserve(SEND, CHAN_A, 0.05 * i)
        except InvalidRequestGuard:
            refused_at = i
            break
        assert r.granted
        limiter.update(r, 403, headers(1_000_000, 999_999, 1000.0), b"{}", 0.05 * i)
    assert refused_at is not None and refused_at < 10_000
    assert refused_at == 9000


def test_shared_scope_429_is_not_counted_as_invalid() -> None:
    limiter = RateLimiter()
    r = granted(limiter, SEND, CHAN_A, 0.0)
    limiter.update(r, 429, {"X-RateLimit-Scope": "shared"}, body_429(0.1), 0.0)
    assert limiter.invalid_count(0.0) == 0
    r = granted(limiter, SEND, CHAN_A, 1.0)
    limiter.update(r, 429, {"X-RateLimit-Scope": "user"}, body_429(0.1), 1.0)
    assert limiter.invalid_count(1.0) == 1


def test_401_stops_all_further_requests() -> None:
    limiter = RateLimiter()
    r = granted(limiter, "GET /users/@me", "-", 0.0)
    limiter.update(r, 401, {}, b'{"message": "401: Unauthorized", "code": 0}', 0.0)
    with pytest.raises(HTTPError) as info:
        limiter.reserve(SEND, CHAN_A, 1.0)
    assert info.value.status == 401


def test_abandon_frees_the_in_flight_slot() -> None:
    limiter = RateLimiter()
    r = granted(limiter, SEND, CHAN_A, 0.0)
    assert limiter.reserve(SEND, CHAN_A, 0.0).delay == math.inf
    limiter.abandon(r, 0.5)
    granted(limiter, SEND, CHAN_A, 0.5)


def test_requests_in_flight_when_the_hash_is_learned_keep_counting() -> None:
    limiter = RateLimiter()
    first_a = granted(limiter, SEND, CHAN_A, 0.0)
    first_b = granted(limiter, SEND, CHAN_B, 0.0)  # separate unknown bucket per major
    limiter.update(first_a, 200, headers(1, 0, 5.0), b"{}", 0.1)
    # B's first request is still in flight: B's bucket (now under the learned hash) stays busy.
    assert not limiter.reserve(SEND, CHAN_B, 0.1).granted
    limiter.update(first_b, 200, headers(2, 1, 5.0), b"{}", 0.2)
    granted(limiter, SEND, CHAN_B, 0.2)


def test_stale_headers_never_extend_the_budget() -> None:
    limiter = RateLimiter()
    r = granted(limiter, SEND, CHAN_A, 0.0)
    limiter.update(r, 200, headers(5, 4, 5.0), b"{}", 0.0)
    late = [granted(limiter, SEND, CHAN_A, 0.0) for _ in range(4)]
    # Answers arrive out of order; a later-arriving "remaining 3" must not give back spent tokens.
    limiter.update(late[3], 200, headers(5, 0, 4.9), b"{}", 0.1)
    limiter.update(late[0], 200, headers(5, 3, 4.9), b"{}", 0.1)
    assert not limiter.reserve(SEND, CHAN_A, 0.1).granted


def test_bad_guard_thresholds_are_a_config_error() -> None:
    with pytest.raises(ConfigError):
        RateLimiter(invalid_warn=5000, invalid_refuse=10_000)
    with pytest.raises(ConfigError):
        RateLimiter(global_limit=0)


def test_html_403_is_a_cloudflare_ban_but_a_json_403_is_not() -> None:
    limiter = RateLimiter()
    r = granted(limiter, SEND, CHAN_A, 0.0)
    limiter.update(r, 403, {}, b'{"message": "Missing Permissions", "code": 50013}', 0.0)
    r = granted(limiter, SEND, CHAN_B, 0.0)
    with pytest.raises(CloudflareBanned) as info:
        limiter.update(r, 403, {"Content-Type": "text/html"}, b"<html>Access denied</html>", 0.0)
    assert info.value.status == 403
    with pytest.raises(CloudflareBanned):
        limiter.reserve(SEND, CHAN_A, 10.0)


def test_message_delete_age_classes_split_the_route() -> None:
    from adapters.discord.rest.client import Route, _delete_age_class

    created = 1_790_000_000.0
    snowflake = (int(created * 1000) - 1_420_070_400_000) << 22
    assert _delete_age_class(snowflake, created + 5) == "sub-10-seconds"
    assert _delete_age_class(snowflake, created + 3600) == ""
    assert _delete_age_class(snowflake, created + 15 * 86400) == "older-than-two-weeks"
    young = Route("DELETE", "/channels/{channel_id}/messages/{message_id}", {"channel_id": 1}, "sub-10-seconds")
    normal = Route("DELETE", "/channels/{channel_id}/messages/{message_id}", {"channel_id": 1})
    assert young.key != normal.key and young.major == normal.major == "channel_id=1"
