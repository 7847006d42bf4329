"""The relay between the two adapters: ids through the store, events into the durable outbox.

:class:`Bridge` is both ports of :mod:`relay.ports` the adapters see:

* **EventSink** (Discord → frameworks). ``publish_nowait`` runs on the gateway reader's path for every event,
  so it does only in-memory work: give messages their Int32 id (:meth:`MessageStore.record` touches memory
  only), encode the frame once (the encoder is injected by the composition root), append it to the outbox
  (buffered, flushed by a background task). It never awaits and never raises: an event it cannot handle is
  logged and counted, and the gateway keeps reading.
* **CommandService** (frameworks → Discord). ``execute`` resolves mirai message ids (Int32, per conversation)
  to Discord ids before the command reaches the Discord executor, and records what the executor sent or
  fetched so frameworks can quote, recall or look it up later by the id it was given.

No adapter is imported here: the encoder and the executor come in through the constructor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import attrs

from relay.envelope import (
    Command,
    ConversationKind,
    ConversationRef,
    Event,
    GetHistory,
    GetMessage,
    Member,
    Message,
    MessageFound,
    MessageList,
    MessageRecalled,
    MessageReceived,
    MessageRef,
    MessageSent,
    PinMessage,
    RecallMessage,
    Result,
    SendMessage,
)
from relay.errors import CommandFailed, FailureKind, RelayError
from relay.ports import BotIdentity, CommandExecutor
from relay.storage.outbox import Outbox
from relay.storage.rows import StoredMessage
from relay.storage.store import MessageStore

log = logging.getLogger(__name__)

#: encodes one envelope event as the frame text frameworks receive (None = nothing to push)
FrameEncoder = Callable[[Event], str | None]

#: a failing event is logged at most this often with its traceback (the rest are counted)
ERROR_LOG_EVERY: Final = 1000


@attrs.frozen(kw_only=True)
class BridgeStatistics:
    events_published: int  #: frames appended to the outbox
    events_skipped: int  #: events with nothing to push (e.g. a recall of a message no framework saw)
    events_failed: int  #: events that raised while being prepared (bugs or store failures; logged)
    commands: int  #: commands executed
    commands_failed: int  #: commands that ended in CommandFailed


class Bridge:
    """EventSink + CommandService; one per process, shared by every adapter."""

    def __init__(
        self,
        *,
        store: MessageStore,
        outbox: Outbox,
        encode_frame: FrameEncoder,
        executor: CommandExecutor,
        identity: BotIdentity,
    ) -> None:
        self._store = store
        self._outbox = outbox
        self._encode_frame = encode_frame
        self._executor = executor
        self._identity = identity
        self._published = 0
        self._skipped = 0
        self._failed = 0
        self._commands = 0
        self._commands_failed = 0
        # `-v` shows every event and command; checked once here so the hot path pays a boolean test only
        self._debug = log.isEnabledFor(logging.DEBUG)

    def statistics(self) -> BridgeStatistics:
        return BridgeStatistics(
            events_published=self._published,
            events_skipped=self._skipped,
            events_failed=self._failed,
            commands=self._commands,
            commands_failed=self._commands_failed,
        )

    # ------------------------------------------------------------------ EventSink (hot path)

    def publish_nowait(self, event: Event) -> None:
        try:
            prepared = self._prepare(event)
            frame = None if prepared is None else self._encode_frame(prepared)
            if prepared is None or frame is None:
                self._skipped += 1
                return
            seq = self._outbox.append(frame)
            self._published += 1
            if self._debug:
                log.debug("event #%d %s", seq, _describe(prepared))
        except Exception:
            # never let one event stop the gateway reader; the failure is visible in logs and statistics
            self._failed += 1
            if self._failed % ERROR_LOG_EVERY == 1:
                log.exception(
                    "could not forward a %s event to the frameworks (%d failed so far)",
                    type(event).__name__,
                    self._failed,
                )

    def _prepare(self, event: Event) -> Event | None:
        if isinstance(event, MessageReceived):
            if event.message.local_id:
                return event  # built by the store with its id (MessageStore.record_new, the translator's factory)
            return MessageReceived(message=self._store.record(event.message))
        if isinstance(event, MessageRecalled):
            return self._prepare_recall(event)
        return event

    def _prepare_recall(self, event: MessageRecalled) -> MessageRecalled | None:
        platform_id = event.ref.platform_id
        stored = self._store.lookup_platform(platform_id) if platform_id is not None else None
        if stored is None:
            # the message predates the bridge (or retention): no framework ever saw an id for it
            log.debug("recall of unknown message %s in channel %s: not pushed", platform_id, event.ref.channel_id)
            return None
        return attrs.evolve(event, ref=stored.ref, author_id=event.author_id or stored.author_id)

    # ------------------------------------------------------------------ CommandService

    async def execute(self, command: Command) -> Result:
        self._commands += 1
        if self._debug:
            log.debug("command %r", command)
        try:
            resolved = self._resolve(command)
            if isinstance(resolved, MessageFound):  # answered from the store
                return resolved
            if isinstance(resolved, GetHistory) and resolved.conversation.kind is ConversationKind.GROUP:
                result = await self._history_any_kind(resolved)
            else:
                result = await self._executor.execute(resolved)
            return self._record_result(resolved, result)
        except CommandFailed as exc:
            self._commands_failed += 1
            if self._debug:
                log.debug("command %s failed: %s", type(command).__name__, exc)
            raise

    async def _history_any_kind(self, command: GetHistory) -> Result:
        """mirai's ``target`` may be a group or a friend; try the group, then the DM, unless the store knows."""
        try:
            return await self._executor.execute(command)
        except CommandFailed as exc:
            if exc.kind is not FailureKind.NOT_FOUND or self._store.conversation(command.conversation.id):
                raise
            private = attrs.evolve(command, conversation=ConversationRef.private(command.conversation.id))
            return await self._executor.execute(private)

    def _resolve(self, command: Command) -> Command | MessageFound:
        if isinstance(command, SendMessage) and command.quote is not None:
            quoted = self._lookup(command.quote, what="quoted message")
            return attrs.evolve(command, quote=quoted.ref)
        if isinstance(command, RecallMessage):
            return RecallMessage(ref=self._lookup(command.ref, what="message").ref)
        if isinstance(command, PinMessage):
            return PinMessage(ref=self._lookup(command.ref, what="message").ref)
        if isinstance(command, GetMessage):
            stored = self._lookup(command.ref, what="message")
            if stored.sender is not None:
                # seen by the bridge with its sender: answer like mirai does, from its own cache
                return MessageFound(message=stored.to_message())
            return GetMessage(ref=stored.ref)
        if isinstance(command, GetHistory):
            known = self._store.conversation(command.conversation.id)
            if known is not None and known != command.conversation:
                return attrs.evolve(command, conversation=known)
        return command

    def _lookup(self, ref: MessageRef, *, what: str) -> StoredMessage:
        if ref.local_id is None:
            raise CommandFailed(FailureKind.BAD_INPUT, f"the {what} needs a messageId")
        stored = self._store.lookup_local(ref.conversation.id, ref.local_id)
        if stored is None:
            raise CommandFailed(
                FailureKind.NOT_FOUND,
                f"{what} {ref.local_id} is unknown in conversation {ref.conversation.id} "
                "(never seen by the bridge, or older than [store] message_retention_days)",
            )
        return stored

    def _record_result(self, command: Command, result: Result) -> Result:
        if isinstance(result, MessageSent) and isinstance(command, SendMessage):
            return self._record_sent(command, result)
        if isinstance(result, MessageFound):
            return MessageFound(message=self._record_message(result.message))
        if isinstance(result, MessageList):
            return MessageList(messages=tuple(self._record_message(m) for m in result.messages))
        return result

    def _record_message(self, message: Message) -> Message:
        try:
            return self._store.record(message)
        except RelayError as exc:
            raise CommandFailed(FailureKind.INTERNAL, f"the message store failed: {exc}") from exc

    def _record_sent(self, command: SendMessage, result: MessageSent) -> MessageSent:
        refs = (result.ref, *result.extra)
        recorded: list[MessageRef] = []
        for ref in refs:
            if ref.platform_id is None or ref.channel_id is None:
                recorded.append(ref)
                continue
            local_id = self._store.record_sent(
                command.conversation,
                channel_id=ref.channel_id,
                platform_id=ref.platform_id,
                author_id=self._identity.bot_id,
                time=result.time,
                # the first message carries the chain; the rest are continuations of a split text
                segments=command.segments if ref is result.ref else (),
            )
            recorded.append(attrs.evolve(ref, local_id=local_id))
        return MessageSent(ref=recorded[0], time=result.time, extra=tuple(recorded[1:]))


def _describe(event: Event) -> str:
    """A short readable line for one event (``-v``): its kind and who/where, not the whole payload."""
    if isinstance(event, MessageReceived):
        message = event.message
        sender = message.sender
        author = sender.user_id if isinstance(sender, Member) else sender.id
        return (
            f"message {message.local_id} in {message.conversation.kind.value} {message.conversation.id} "
            f"from {author} ({len(message.segments)} segments)"
        )
    if isinstance(event, MessageRecalled):
        return f"recall of {event.ref.local_id} in {event.ref.conversation.id}"
    return type(event).__name__
