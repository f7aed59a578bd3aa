"""The processing threads of a depth_node: the cameras' newest frames in turn -> depth -> instances -> published.

One backend (one ONNX Runtime session, one TensorRT engine and context) serves every camera. Two threads
form a two-stage pipeline, so that a frame's depth is never held up by the previous frame's instances:

    inference thread:  take up to ``pipeline.max_batch`` waiting frames from RoundRobinFrames (one for a
                       static-batch model, every waiting camera for a dynamic-batch one), wait for their
                       label images (instance_source topic), preprocess + infer + map the depth back,
                       publish depth/image and depth/camera_info, hand the frames to the instance thread
    instance thread:   instance statistics, publish depth/instances (and markers)

The hand-over holds one turn: the inference thread waits for the instance thread rather than running
ahead, so every frame whose depth is published also gets its instances, and memory stays flat. On two
cores the numpy work of one frame's instances overlaps the next frame's inference (ONNX Runtime and
most large numpy operations release the GIL).

A frame that fails (bad labels, a processing error) is rejected on its own camera only: if a batch
fails, its frames are retried one by one, so the others are still published.
"""
from __future__ import annotations

import queue
import threading

from icm_depth_ros.node.camera_channel import CameraChannel, Frame
from icm_depth_ros.node.frame_scheduler import RoundRobinFrames
from icm_depth_ros.node.input_checks import InputError, stamp_seconds
from icm_depth_ros.processing.pipeline import FrameInput

_STOP = object()  # tells the instance thread to end


class InferenceWorker:
    """Runs ``pipeline`` on the frames of ``channels`` (indexed as in ``frames``) until stopped."""

    def __init__(self, pipeline, channels: list[CameraChannel], frames: RoundRobinFrames, instance_source: str):
        self.pipeline, self.channels, self.frames = pipeline, channels, frames
        self.instance_source = instance_source
        self.max_batch = min(pipeline.max_batch, len(channels))
        self._turns: queue.Queue = queue.Queue(maxsize=1)  # [(channel, frame, FrameInput, result, membership)]
        self._threads = [threading.Thread(target=self._run_inference, name="inference", daemon=True),
                         threading.Thread(target=self._run_instances, name="instances", daemon=True)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.frames.close()
        self._threads[0].join(timeout=timeout)  # it puts _STOP for the instance thread when it ends
        self._threads[1].join(timeout=timeout)

    # ---- inference thread ---------------------------------------------------------------------------
    def _run_inference(self) -> None:
        try:
            while True:
                taken = self.frames.take(self.max_batch, timeout=0.5)
                if not taken:
                    if self.frames.closed:
                        return
                    continue
                turn = self.depth_turn(taken)
                if turn:
                    self._turns.put(turn)  # blocks while the instance thread is still on the previous turn
        finally:
            self._turns.put(_STOP)

    def depth_turn(self, taken: list[tuple[int, Frame]]) -> list[tuple]:
        """Infer [(camera index, frame)] and publish their depth; returns what the instance stage needs."""
        ready = []
        for index, frame in taken:
            channel = self.channels[index]
            try:
                ready.append((channel, frame, FrameInput(frame.rgb, frame.K, channel.labels_for(frame))))
            except InputError as error:
                channel.reject(error)
        if not ready:
            return []
        try:
            outputs = self.pipeline.depth_batch([item for _, _, item in ready])
        except Exception as error:  # noqa: BLE001 - keep the node alive; find the frame that failed
            outputs = [None] * len(ready) if len(ready) == 1 else [self._depth_alone(entry) for entry in ready]
            if len(ready) == 1:
                ready[0][0].reject(_processing_error(ready[0][1], error))
        turn = []
        for (channel, frame, item), output in zip(ready, outputs):
            if output is None:
                continue
            result, membership = output
            try:
                channel.publish_depth(frame, result)
            except Exception as error:  # noqa: BLE001
                channel.reject(_processing_error(frame, error))
                continue
            turn.append((channel, frame, item, result, membership))
        return turn

    def _depth_alone(self, entry):
        """A frame of a failed batch on its own: (result, membership), or None (rejected on its camera)."""
        channel, frame, item = entry
        try:
            return self.pipeline.depth_batch([item])[0]
        except Exception as error:  # noqa: BLE001
            channel.reject(_processing_error(frame, error))
            return None

    # ---- instance thread ----------------------------------------------------------------------------
    def _run_instances(self) -> None:
        while True:
            turn = self._turns.get()
            if turn is _STOP:
                return
            self.instance_turn(turn)

    def instance_turn(self, turn: list[tuple]) -> None:
        for channel, frame, item, result, membership in turn:
            try:
                self.pipeline.add_instances(item, result, membership, self.instance_source)
                channel.publish_instances(frame, result)
            except Exception as error:  # noqa: BLE001
                channel.reject(_processing_error(frame, error))


def _processing_error(frame: Frame, error: Exception) -> InputError:
    return InputError("processing", f"processing the frame stamped {stamp_seconds(frame.header.stamp):.6f} "
                                    f"failed: {error!r}")
