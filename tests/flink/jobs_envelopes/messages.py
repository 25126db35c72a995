"""Message types of the envelope test jobs (an importable module: registered on import)."""

from __future__ import annotations

from pydantic import BaseModel

from protocols import message
from protocols.events import Event


@message("envtest.Greeting")
class Greeting(Event):
    """To `Echo`: answered with an output."""

    text: str
    n: int


@message("envtest.Note")
class Note(BaseModel):
    """A plain model (not an Event): delivered as InputEvent(input=<dict>)."""

    body: str


@message("envtest.Start")
class Start(Event):
    """To a `Pinger`: send `pings` pings to `ponger`."""

    pings: int
    ponger: str


@message("envtest.Ping")
class Ping(Event):
    seq: int


@message("envtest.Pong")
class Pong(Event):
    seq: int
    in_order: bool
