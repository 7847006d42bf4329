"""The bridge's HTTP/1.1 server: h11 wrapped thinly in trio, with a websocket-upgrade hand-off.

It serves what listens on a port: mirai-api-http's ``http`` and ``ws`` adapters, health and metrics, inbound
webhook robots. The modules, one job each:

* ``models``    — Request, Response, Handler, ServerLimits, RequestRejected, JSON error bodies (pure)
* ``server``    — :func:`~relay.web.server.serve_http`: sockets, h11, limits and timeouts, the upgrade hand-off
* ``routing``   — Router: (method, exact path or prefix) → Handler, 404/405 (pure)
* ``cors``      — with_cors: mirai-api-http's ``cors`` setting for browsers (pure)
* ``bodies``    — JSON bodies: 415 / 400 / 422 (pure)
* ``multipart`` — multipart/form-data uploads on top of python-multipart (pure)
* ``metrics``   — a private prometheus-client registry and the ``/metrics`` handler

Why h11 and not an ASGI server (hypercorn runs on trio too): mirai-api-http lets its ``ws`` and ``http``
adapters share one port, so this server must hand a websocket upgrade to the project's own websocket code
(``relay/wire``), which builds event frames directly and writes them in batches. ASGI allows one
``websocket.send`` per message, and that costs more than the event path can pay. Measured with
``scripts/measure_asgi_ws.py`` (20,000 text messages of 82 bytes, server to one client over loopback, best of
5): hypercorn's trio worker spent 26.5 µs of CPU per message (37,800 messages/s); a plain trio stream with one
``send_all`` per frame 11.1 µs; frames built directly and sent 64 per ``send_all`` 0.4 µs. The bridge spends
about 54 µs per event at saturation (18,565 events/s), so hypercorn would have put the ws adapter near 0.67x
the reverse-ws rate (issue 13 asks for 0.9x) and capped a backlog replay (127,000+ events/s today) near
38,000/s. h11 is the maintained sans-I/O HTTP/1.1 parser that wsproto is built on; nothing here parses HTTP
by hand.

Import the modules themselves (``from relay.web import models``); this package imports nothing, so that its
pure modules stay free of trio.
"""
