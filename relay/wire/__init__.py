"""The bridge's one websocket implementation (RFC 6455), client and server side, on trio.

* :mod:`relay.wire.frames` — pure: parse frames (either role), encode frames, close payloads;
* :mod:`relay.wire.connection` — trio: one open websocket (whole messages in, batched frames out, the close
  handshake), the same class for both roles;
* :mod:`relay.wire.client` — trio: dial ``ws://`` / ``wss://`` and upgrade (the Discord gateway, reverse-ws
  framework destinations, ``check --online``);
* :mod:`relay.wire.server` — trio: accept an upgrade request an HTTP server has already read.

It lives in ``relay/`` because both adapters use it and adapters never import each other.
"""
