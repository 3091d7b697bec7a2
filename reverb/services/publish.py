"""The one way services publish: `after_commit` for what a transaction changed, `now` for
live-only signals that depend on no transaction. Neither waits for the bus: both hand the
envelope to the relay (reverb.realtime.bus.relay), which publishes it in the background."""

from __future__ import annotations

from dataclasses import dataclass

from reverb.domain.events import Envelope
from reverb.realtime.bus.relay import Relay
from reverb.storage.db import Tx


@dataclass(frozen=True, slots=True)
class Publisher:
    relay: Relay

    def after_commit(self, tx: Tx, envelope: Envelope) -> None:
        """Publish once `tx` has committed; never if it rolls back."""
        tx.after_commit(lambda: self.relay.put(envelope))

    def now(self, envelope: Envelope) -> None:
        self.relay.put(envelope)
