"""The inference thread of a depth_node: takes the cameras' newest frames in turn, runs them, publishes.

One thread for all cameras, so one backend (one ONNX Runtime session, one TensorRT engine and context)
serves them. Each turn takes up to ``pipeline.max_batch`` waiting frames from RoundRobinFrames (one
for a static-batch model, every waiting camera for a dynamic-batch one) and runs them as one batch.
A frame that fails (bad labels, a processing error) is rejected on its own camera only: if a batch
fails, its frames are retried one by one, so the others are still published.
"""
from __future__ import annotations

import threading

from icm_depth_ros.camera_channel import CameraChannel, Frame
from icm_depth_ros.frame_scheduler import RoundRobinFrames
from icm_depth_ros.input_checks import InputError, stamp_seconds
from icm_depth_ros.pipeline import FrameInput


class InferenceWorker:
    """Runs ``pipeline`` on the frames of ``channels`` (indexed as in ``frames``) until ``frames`` is closed."""

    def __init__(self, pipeline, channels: list[CameraChannel], frames: RoundRobinFrames, instance_source: str):
        self.pipeline, self.channels, self.frames = pipeline, channels, frames
        self.instance_source = instance_source
        self.max_batch = min(pipeline.max_batch, len(channels))
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.frames.close()
        self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while True:
            taken = self.frames.take(self.max_batch, timeout=0.5)
            if not taken:
                if self.frames.closed:
                    return
                continue
            self.run_turn(taken)

    def run_turn(self, taken: list[tuple[int, Frame]]) -> None:
        """Process and publish [(camera index, frame)]; every failure stays on its own camera."""
        ready = []
        for index, frame in taken:
            channel = self.channels[index]
            try:
                ready.append((channel, frame, FrameInput(frame.rgb, frame.K, channel.labels_for(frame))))
            except InputError as error:
                channel.reject(error)
        if not ready:
            return
        published = set()  # frames whose depth is out

        def publish_depth(position: int, result, batch=ready) -> None:
            channel, frame, _ = batch[position]
            channel.publish_depth(frame, result)
            published.add(id(frame))

        try:
            results = self.pipeline.process_batch([item for _, _, item in ready], self.instance_source, publish_depth)
        except Exception as error:  # noqa: BLE001 - keep the node alive; find the frame that failed
            if len(ready) == 1:
                channel, frame, _ = ready[0]
                channel.reject(_processing_error(frame, error))
                return
            results = [self._run_alone(entry, published) for entry in ready]
        for (channel, frame, _), result in zip(ready, results):
            if result is None:
                continue
            try:
                channel.publish_instances(frame, result)
            except Exception as error:  # noqa: BLE001
                channel.reject(_processing_error(frame, error))

    def _run_alone(self, entry, published: set):
        """A frame of a failed batch on its own: its result, or None (rejected on its camera)."""
        channel, frame, item = entry
        try:
            on_depth = None if id(frame) in published else (lambda _, result: channel.publish_depth(frame, result))
            return self.pipeline.process_batch([item], self.instance_source, on_depth)[0]
        except Exception as error:  # noqa: BLE001
            channel.reject(_processing_error(frame, error))
            return None


def _processing_error(frame: Frame, error: Exception) -> InputError:
    return InputError("processing", f"processing the frame stamped {stamp_seconds(frame.header.stamp):.6f} "
                                    f"failed: {error!r}")
