"""What every runtime component shares: it lives on an event loop, heartbeats, and reports where
its time goes."""

from __future__ import annotations

import time
from typing import Any

from signal_slot.signal_slot import EventLoopObject, Timer, signal

from asyncrl.utils.timing import Timings

TIMINGS_INTERVAL_SEC = 5.0


class Component(EventLoopObject):
    def __init__(self, event_loop: Any, object_id: str, cfg: Any):
        super().__init__(event_loop, object_id=object_id)
        self.cfg = cfg
        self.timings = Timings()
        self._report_timers: list[Timer] = []

    @signal
    def heartbeat(self): ...

    @signal
    def timings_report(self): ...

    def start_reporting(self) -> None:
        """Call from on_start, in the component's own process."""
        self.timings = Timings()
        for interval, slot in ((self.cfg.heartbeat_interval, self._send_heartbeat),
                               (TIMINGS_INTERVAL_SEC, self._send_timings)):
            timer = Timer(self.event_loop, interval)
            timer.timeout.connect(slot)
            self._report_timers.append(timer)
        self._send_heartbeat()

    def _send_heartbeat(self) -> None:
        self.heartbeat.emit(self.object_id, time.time())

    def _send_timings(self) -> None:
        self.timings_report.emit(self.object_id, self.timings.snapshot())
