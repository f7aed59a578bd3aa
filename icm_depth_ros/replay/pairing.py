"""Pair each camera image with its ground truth, camera_info and instance labels by header stamp.

Decided on stamps alone (first pass over the bag), so the second pass can assemble each frame from
the few messages it needs and forget them again (``FrameAssembler``).

Rules (docs/replay.md):
  * ground truth (when a topic is given): the depth message with the nearest stamp within ``tolerance``;
    none -> skipped ("no_ground_truth"). Without a topic every image is planned, to be run unscored.
  * camera_info (when a topic is given): the nearest within ``tolerance``, else the latest one stamped
    before the image (drivers may publish it more slowly); none at all -> skipped ("no_camera_info").
  * instances (when a topic is given): the nearest within ``tolerance``; none -> the frame is scored
    without instance figures and counted in ``frames_without_instances``.
  * per-instance truth (when a topic is given): the nearest within ``tolerance``; none -> the frame's
    tracks are written but not scored.
  * an image whose header does not decode -> skipped ("undecodable_image").
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field


@dataclass
class FramePlan:
    """Which message (index within its topic) of each role makes frame ``index``."""

    index: int  # position of the image within the image topic
    stamp_ns: int
    parts: dict[str, int] = field(default_factory=dict)  # role -> message index


class StampIndex:
    """Sorted stamps of one topic for nearest / latest-before look-ups."""

    def __init__(self, stamps: list[int | None]):
        pairs = sorted((s, i) for i, s in enumerate(stamps) if s is not None)
        self.stamps = [s for s, _ in pairs]
        self.indices = [i for _, i in pairs]

    def nearest(self, stamp: int, tolerance: int) -> int | None:
        position = bisect.bisect_left(self.stamps, stamp)
        best = None
        for candidate in (position - 1, position):
            if 0 <= candidate < len(self.stamps):
                distance = abs(self.stamps[candidate] - stamp)
                if distance <= tolerance and (best is None or distance < best[0]):
                    best = (distance, self.indices[candidate])
        return None if best is None else best[1]

    def latest_before(self, stamp: int) -> int | None:
        position = bisect.bisect_right(self.stamps, stamp)
        return self.indices[position - 1] if position else None


@dataclass
class Skip:
    """An image that will not be scored, and why (a reason key plus a sentence for the report)."""

    index: int
    stamp_ns: int | None
    reason: str
    detail: str


def plan_frames(stamps: dict[str, list[int | None]], tolerance_ns: int) -> tuple[list[FramePlan], list[Skip], int]:
    """stamps: role -> header stamps in bag order (BagSource.stamps).

    Returns (plans of the frames to score, the images skipped, frames without instance labels).
    """
    indexes = {role: StampIndex(values) for role, values in stamps.items() if role != "image"}
    plans: list[FramePlan] = []
    skipped: list[Skip] = []
    without_instances = 0
    tolerance_ms = tolerance_ns / 1e6
    for index, stamp in enumerate(stamps["image"]):
        if stamp is None:
            skipped.append(Skip(index, None, "undecodable_image", f"image {index}: its header does not decode"))
            continue
        plan = FramePlan(index, stamp, {"image": index})
        if "depth" in indexes:
            depth = indexes["depth"].nearest(stamp, tolerance_ns)
            if depth is None:
                skipped.append(Skip(index, stamp, "no_ground_truth",
                                    f"image {index} (stamp {stamp} ns): no ground truth within {tolerance_ms:g} ms"))
                continue
            plan.parts["depth"] = depth
        if "camera_info" in indexes:
            info = indexes["camera_info"].nearest(stamp, tolerance_ns)
            if info is None:
                info = indexes["camera_info"].latest_before(stamp)
            if info is None:
                skipped.append(Skip(index, stamp, "no_camera_info",
                                    f"image {index} (stamp {stamp} ns): no camera_info at or before it"))
                continue
            plan.parts["camera_info"] = info
        if "instances" in indexes:
            labels = indexes["instances"].nearest(stamp, tolerance_ns)
            if labels is None:
                without_instances += 1
            else:
                plan.parts["instances"] = labels
        if "truth" in indexes:
            truth = indexes["truth"].nearest(stamp, tolerance_ns)
            if truth is not None:
                plan.parts["truth"] = truth
        plans.append(plan)
    return plans, skipped, without_instances


class FrameAssembler:
    """Collects the decoded parts of planned frames as messages stream by; yields each frame once complete.

    A decoded message is kept only while a pending frame still needs it (reference counts), so memory
    stays at the handful of messages between an image and its latest partner in the bag.
    """

    def __init__(self, plans: list[FramePlan]):
        self.pending = {plan.index: plan for plan in plans}
        self.users: dict[tuple[str, int], list[int]] = {}  # (role, message index) -> frames needing it
        for plan in plans:
            for role, message in plan.parts.items():
                self.users.setdefault((role, message), []).append(plan.index)
        self.missing = {plan.index: len(plan.parts) for plan in plans}
        self.store: dict[tuple[str, int], object] = {}
        self.remaining_uses: dict[tuple[str, int], int] = {key: len(v) for key, v in self.users.items()}

    def wants(self, role: str, message: int) -> bool:
        return (role, message) in self.users

    def add(self, role: str, message: int, value) -> list[tuple[FramePlan, dict[str, object]]]:
        """Store a decoded part; return the frames it completes as (plan, role -> value)."""
        key = (role, message)
        frames = [frame for frame in self.users.pop(key, []) if frame in self.pending]
        if not frames:  # every frame that wanted it was dropped already
            return []
        self.store[key] = value
        done = []
        for frame in frames:
            self.missing[frame] -= 1
            if self.missing[frame] == 0:
                done.append(self._complete(frame))
        return done

    def fail(self, role: str, message: int) -> list[FramePlan]:
        """A part did not decode: drop (and return) the frames that needed it."""
        dropped = []
        for frame in self.users.pop((role, message), []):
            if frame in self.pending:
                dropped.append(self._release(frame))
        return dropped

    def _complete(self, frame: int) -> tuple[FramePlan, dict[str, object]]:
        plan = self.pending[frame]
        parts = {role: self.store[(role, message)] for role, message in plan.parts.items()}
        self._release(frame)
        return plan, parts

    def _release(self, frame: int) -> FramePlan:
        plan = self.pending.pop(frame)
        self.missing.pop(frame)
        for role, message in plan.parts.items():
            key = (role, message)
            self.remaining_uses[key] -= 1
            if self.remaining_uses[key] == 0:
                self.store.pop(key, None)
        return plan

    def leftovers(self) -> list[FramePlan]:
        """Frames still incomplete when the bag ended (their messages were never read)."""
        return list(self.pending.values())
