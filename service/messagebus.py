"""The message bus: runs the handlers of the events a transaction recorded, inside it.

A use case records events on its unit of work (``uow.record(BookingCreated(...))``); when it
commits, the unit of work hands them to the bus before the database commit:

1. each event, in the order recorded, goes to its handlers (``service/bootstrap.py`` says
   which); a handler may record further events, which are handled after the ones already
   queued, until the queue is empty;
2. then each *final* handler runs once with every handled event of the kinds it asked for
   (the change feed numbers its changes here: see ``service/domain/calendar/sync.py``).

Handlers run in the transaction of the change, so what they write (reminders, change-feed
rows, webhook deliveries: the outboxes) commits with it or not at all. Unlike a bus that
runs after the commit, an exception in a handler is not swallowed: it rolls the whole change
back and reaches the caller like any error of the use case.

The anchor is cosmicpython's ``service_layer/messagebus.py`` (chapters 8-9), run before the
commit rather than after it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from service.domain.events import Event

Handler = Callable[[Any, Any], None]  # (unit of work, event) -> None
FinalHandler = Callable[[Any, Any], None]  # (unit of work, list of events) -> None


class Transaction(Protocol):
    """What the bus needs of a unit of work: the events recorded since it last asked."""

    def take_events(self) -> list[Event]: ...


class UnknownEvent(LookupError):
    """An event type nobody declared in ``service/bootstrap.py`` (a typo, or a new event
    whose consequences nobody decided yet)."""


class MessageBus:
    def __init__(self, handlers: Mapping[type[Event], Sequence[Handler]],
                 final: Sequence[tuple[tuple[type[Event], ...], FinalHandler]] = ()) -> None:
        self.handlers = {kind: tuple(found) for kind, found in handlers.items()}
        self.final = tuple(final)

    def run(self, uow: Transaction) -> list[Event]:
        """Handle every event the transaction recorded (and those its handlers record),
        then run the final handlers; returns the handled events, in order."""
        queue = deque(uow.take_events())
        handled: list[Event] = []
        while queue:
            event = queue.popleft()
            try:
                handlers = self.handlers[type(event)]
            except KeyError:
                raise UnknownEvent(f"No handlers are declared for {type(event).__name__}: "
                                   "list it in service/bootstrap.py (with [] if nothing "
                                   "reacts to it).") from None
            for handler in handlers:
                handler(uow, event)
                queue.extend(uow.take_events())
            handled.append(event)
        for kinds, handler in self.final:
            batch = [event for event in handled if isinstance(event, kinds)]
            if batch:
                handler(uow, batch)
        if uow.take_events():
            raise RuntimeError("A final handler recorded an event; only event handlers may.")
        return handled
