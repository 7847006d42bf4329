"""Inbound webhook robots: ``POST /robots/<name>`` posts what CI, monitoring or a cron job sends into one channel.

The third adapter, beside ``discord`` and ``mirai``; it imports only ``relay``. One job per module:

* ``payloads`` — the body shapes senders already produce → the text to post (pure)
* ``auth``     — which signature a request carries and whether it holds (pure, on :mod:`relay.signatures`)
* ``render``   — how posts look on Discord and how a burst is packed into ≤ 2,000-character messages (pure)
* ``queue``    — the durable delivery table in the store's SQLite file (no trio)
* ``service``  — the HTTP handlers (routes for the bridge's ``[server]`` listener) and the per-channel senders
"""
