"""The interfaces adapters and the relay meet at (no trio here: these are only shapes).

Data flow (docs/architecture.md §1):

* Discord adapter → ``EventSink.publish_nowait(event)``: never blocks (the gateway reader must keep
  answering heartbeats). The relay allocates message ids in the store, encodes the event for the
  frameworks and appends it to the durable outbox.
* mirai adapter → ``CommandService.execute(command)``: the relay resolves message ids through the store,
  runs the command on a ``CommandExecutor`` (the Discord adapter) and records sent messages.
* Failures are raised as :class:`relay.errors.CommandFailed`; every other exception is a bug and is
  answered as an internal error by the caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Protocol, TypeAlias

from relay.envelope import Command, ConversationRef, Event, Group, Member, Message, Quote, Result, Segment, User


class EventSink(Protocol):
    def publish_nowait(self, event: Event) -> None:
        """Hand one event to the relay. Never blocks; never raises for a full queue (the outbox is durable)."""


class MessageFactory(Protocol):
    """Builds the :class:`~relay.envelope.Message` of a live incoming message: the class itself, or
    ``MessageStore.record_new``, which builds it once with its Int32 id already allocated (the event path)."""

    def __call__(
        self,
        *,
        conversation: ConversationRef,
        channel_id: int,
        platform_id: int,
        time: int,
        sender: Member | User,
        segments: tuple[Segment, ...],
        quote: Quote | None = ...,
        from_self: bool = ...,
        group: Group | None = ...,
    ) -> Message: ...


class CommandExecutor(Protocol):
    """Carries out envelope commands on a platform (Discord)."""

    async def execute(self, command: Command) -> Result:
        """Run ``command``; raise ``CommandFailed`` with a readable message when it cannot be done."""


class CommandService(Protocol):
    """What an outbound adapter calls: the relay's id-resolving front of a ``CommandExecutor``."""

    async def execute(self, command: Command) -> Result: ...


class BotIdentity(Protocol):
    """Who the bot is, once the Discord side knows it (0 before the first READY)."""

    @property
    def bot_id(self) -> int: ...

    @property
    def bot_name(self) -> str: ...


#: Returns once the bot's identity may have changed (a Discord session started: READY or RESUMED), so a task that
#: needs the bot id looks again then instead of polling. The composition root passes a
#: ``trio.lowlevel.ParkingLot``'s ``park``, which the gateway listener unparks (relay/app.py).
IdentityChanged: TypeAlias = Callable[[], Awaitable[object]]


class IdPresenter(Protocol):
    """How the mirai side shows Discord ids to frameworks and reads them back (``[mirai] ids``; relay/ids.py).

    The mirai encoders call :meth:`present` for every 64-bit id they write and the command decoder calls
    :meth:`resolve` for every one it reads. Ids first seen inside :meth:`deferred` are made durable together when
    the block ends (outside it, before :meth:`present` returns): nothing carrying them may leave the process
    earlier, and nothing inside the block may ``await``.
    """

    def present(self, real: int) -> int:
        """The id frameworks see for the Discord id ``real``."""

    def resolve(self, presented: int) -> int | None:
        """The Discord id behind an id a framework sent; ``None`` when no Discord id has that presented id."""

    def deferred(self) -> AbstractContextManager[None]: ...
