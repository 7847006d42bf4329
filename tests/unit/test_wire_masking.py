"""relay.wire.frames.mask_payload: the websockets package's C helper where it loads, the Python XOR elsewhere; the
same bytes either way (RFC 6455 §5.3)."""

from __future__ import annotations

import os
import random

import pytest

from relay.wire import frames
from relay.wire.frames import MASKING_KEY_BYTES, mask_payload, mask_payload_portable


def per_octet(payload: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))  # RFC 6455 §5.3, as written


def test_the_compiled_helper_masks_where_websockets_is_installed() -> None:
    pytest.importorskip("websockets.speedups")
    assert mask_payload is not mask_payload_portable


@pytest.mark.parametrize("mask", [mask_payload, mask_payload_portable], ids=["installed", "portable"])
def test_both_forms_give_the_per_octet_definition_and_are_their_own_inverse(mask: object) -> None:
    rng = random.Random(18)
    assert callable(mask)
    for length in [*range(40), 125, 126, 600, 4_099, 65_536, 70_001]:  # every remainder mod 4, 8, 16 and 32
        key = rng.randbytes(MASKING_KEY_BYTES)
        payload = rng.randbytes(length)
        masked = mask(payload, key)
        assert masked == per_octet(payload, key) == mask_payload_portable(payload, key)
        assert mask(masked, key) == payload


def test_masked_frames_are_the_same_with_either_form(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["", "x", "é" * 70, "y" * 600, "z" * 70_000]
    keys = os.urandom(MASKING_KEY_BYTES * len(texts))
    fast = frames.encode_text_frames(texts, keys)
    monkeypatch.setattr(frames, "mask_payload", mask_payload_portable)
    assert frames.encode_text_frames(texts, keys) == fast
