"""The bridge's SQLite file: the message-id store, the durable outbox, the gateway session snapshot, their shared
setup, their one flush, and the file's safety.

``sqlite`` (connections, pragmas, page caches, multi-row writes, transactions), ``rows`` (the stored-message row
codec), ``store`` (:class:`~relay.storage.store.MessageStore`), ``outbox`` (:class:`~relay.storage.outbox.Outbox`),
``sessions`` (the gateway session snapshot), ``flush`` (all three in one transaction), ``flushers`` (trio: the
flush loop, and the gateway reader's back-pressure on it), ``guard`` (files private at rest, the start-up
integrity check, the watch for a deleted or replaced file), ``salvage`` (reading around damaged pages) and
``repair`` (``store check`` / ``store repair``). Only ``flushers`` imports trio; the rest is synchronous code the
trio side drives.
"""
