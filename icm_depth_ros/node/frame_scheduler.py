"""Which cameras' frames the inference thread takes next: one latest-frame slot per camera, served in turn.

Free of ROS. Each camera's subscription callback puts its newest frame into its own slot (a frame still
waiting there is replaced and counted as dropped, as with one camera). The inference thread calls
``take(max_frames)``: it waits until some slot holds a frame, then takes the waiting frames of up to
``max_frames`` cameras, starting with the camera after the last one served. So a camera whose
frames arrive faster, or first, cannot starve the others: with ``max_frames`` = 1 (a model with a fixed
batch of 1) the cameras take turns; with ``max_frames`` = number of cameras (a dynamic-batch model)
every waiting camera is in the batch.
"""
from __future__ import annotations

import threading


class RoundRobinFrames:
    """Latest-frame slots for ``cameras`` cameras (indices 0..cameras-1), taken in round-robin order."""

    def __init__(self, cameras: int):
        if cameras < 1:
            raise ValueError(f"need at least one camera, got {cameras}")
        self._condition = threading.Condition()
        self._frames: list[object | None] = [None] * cameras
        self._next = 0  # the camera whose frame is taken first next time
        self._closed = False

    @property
    def cameras(self) -> int:
        return len(self._frames)

    def put(self, camera: int, frame) -> bool:
        """Make ``frame`` camera ``camera``'s newest; True when it replaced (dropped) an untaken one."""
        with self._condition:
            dropped = self._frames[camera] is not None
            self._frames[camera] = frame
            self._condition.notify()
            return dropped

    def take(self, max_frames: int = 1, timeout: float | None = None) -> list[tuple[int, object]]:
        """[(camera, frame)] of up to ``max_frames`` cameras in turn order; [] after ``timeout`` s or once closed."""
        with self._condition:
            if not self._closed and all(frame is None for frame in self._frames):
                self._condition.wait(timeout)
            taken = []
            count = len(self._frames)
            for step in range(count):
                camera = (self._next + step) % count
                if self._frames[camera] is not None:
                    taken.append((camera, self._frames[camera]))
                    self._frames[camera] = None
                    if len(taken) == max_frames:
                        break
            if taken:
                self._next = (taken[-1][0] + 1) % count  # the next turn starts after the last camera served
            return taken

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._frames = [None] * len(self._frames)
            self._condition.notify_all()
