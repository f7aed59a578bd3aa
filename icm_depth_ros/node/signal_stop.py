"""Ending a node process on SIGINT / SIGTERM: any number of them, exit status 0, no traceback.

rclpy's own handlers (installed by rclpy.init) raise KeyboardInterrupt in the main thread for every
SIGINT, so a second Ctrl-C (``ros2 launch`` forwards one on top of the terminal's) lands in the middle
of the clean-up and ends the process with a traceback and status -2. Instead, ``rclpy.init`` is called
with ``SignalHandlerOptions.NO`` (rclpy Humble and later) and ``SignalStop`` installs handlers that only
record the request; ``spin_until_stopped`` spins in short slices and returns once a signal came, and
the clean-up then runs with further signals recorded, not raised, and ignored once it is done (a late one
during interpreter finalization would otherwise end the process with status -2: seen under ros2 launch).
"""
from __future__ import annotations

import signal
import threading

SPIN_SLICE_S = 0.1  # how soon a signal is seen: the wait inside spin_once cannot be interrupted


class SignalStop:
    """Records SIGINT/SIGTERM (and how many came) instead of raising; ``requested`` tells whether one came."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self._event = threading.Event()
        self.received: list[str] = []
        self._previous = {}

    def install(self) -> "SignalStop":
        """Take over SIGINT and SIGTERM (call from the main thread)."""
        for number in self.SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def ignore_further(self) -> None:
        """From here on SIGINT/SIGTERM are ignored: the process is ending anyway, and one arriving while the
        interpreter finalizes (where Python restores the default handlers it set) would kill it with -2."""
        for number in self.SIGNALS:
            signal.signal(number, signal.SIG_IGN)

    def _handle(self, number, frame) -> None:
        self.received.append(signal.Signals(number).name)
        self._event.set()

    def request(self) -> None:
        """Stop without a signal (tests, or the node deciding to exit)."""
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()


def spin_until_stopped(executor, stop: SignalStop, context) -> None:
    """Spin ``executor`` until ``stop`` is requested or ``context`` is shut down."""
    while not stop.requested and context.ok():
        executor.spin_once(timeout_sec=SPIN_SLICE_S)
