"""The bridge's SQLite file: the message-id store, the durable outbox, their shared setup and their flushers.

``sqlite`` (connections, pragmas, page caches, multi-row writes, transactions), ``rows`` (the stored-message row
codec), ``store`` (:class:`~relay.storage.store.MessageStore`), ``outbox`` (:class:`~relay.storage.outbox.Outbox`)
and ``flushers`` (trio: both writers' flush loops, and the gateway reader's back-pressure on them). Only
``flushers`` imports trio; the rest is synchronous code the trio side drives.
"""
