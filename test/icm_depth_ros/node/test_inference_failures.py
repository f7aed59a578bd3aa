"""The inference worker when the backend fails (InferenceError: CUDA/TensorRT) and on programming errors,
with a stub pipeline and stub cameras in-process (no ROS graph): logged once with the traceback, status ERROR,
the next frame tried, serving stopped after failures_before_stop calls in a row, bugs never swallowed."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from icm_depth_ros.inference.tensorrt_backend import CudaError
from icm_depth_ros.node.frame_flow import FrameStatistics
from icm_depth_ros.node.frame_scheduler import RoundRobinFrames
from icm_depth_ros.node.inference_worker import EXIT_BACKEND_FAILED, EXIT_BUG, InferenceWorker

LOST_CONTEXT = CudaError("cudaStreamSynchronize", "cudaErrorLaunchFailure")


class Logger:
    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def error(self, text):
        self.lines.append(("error", text))

    def info(self, text):
        self.lines.append(("info", text))


class Camera:
    """What the worker uses of a CameraChannel: labels, reject, publish, stats."""

    def __init__(self):
        self.stats = FrameStatistics()
        self.rejected, self.depths, self.instances = [], [], []

    def labels_for(self, frame):
        return None

    def reject(self, error):
        self.stats.on_rejected(error.kind)
        self.rejected.append((error.kind, str(error)))

    def publish_depth(self, frame, result):
        self.depths.append(frame.header.stamp.sec)

    def publish_instances(self, frame, result):
        self.instances.append(frame.header.stamp.sec)


class Pipeline:
    """infer_batch raises outcomes[i] (an exception) for call i, or returns what was inferred; later calls succeed."""

    max_batch = 1

    def __init__(self, outcomes):
        self.outcomes, self.calls = list(outcomes), 0

    def infer_batch(self, items):
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        return [np.ones((2, 2), np.float32) for _ in items]

    def finish_depth(self, item, inferred):
        return SimpleNamespace(depth=inferred), (np.zeros((1, 1), np.int32), np.ones((1, 1), np.float32))

    def add_instances(self, item, result, maps, instance_source):
        return result


def frame(second: int):
    stamp = SimpleNamespace(sec=second, nanosec=0)
    return SimpleNamespace(header=SimpleNamespace(stamp=stamp), rgb=np.zeros((2, 2, 3), np.uint8), K=None)


def worker_for(outcomes, failures_before_stop=3):
    camera, logger, stops = Camera(), Logger(), []
    worker = InferenceWorker(Pipeline(outcomes), [camera], RoundRobinFrames(1), "none", logger=logger,
                             on_stop=lambda reason, status: stops.append((reason, status)),
                             failures_before_stop=failures_before_stop)
    return worker, camera, logger, stops


def test_a_backend_error_is_logged_once_with_its_traceback_and_the_next_frame_is_tried():
    worker, camera, logger, stops = worker_for([LOST_CONTEXT, LOST_CONTEXT])
    assert worker.depth_turn([(0, frame(1))]) == [] and worker.depth_turn([(0, frame(2))]) == []
    assert worker.status() == ("ERROR", "backend failing (2 call(s) in a row): CudaError: CUDA cudaStreamSynchronize "
                                        "failed: cudaErrorLaunchFailure")
    errors = [text for level, text in logger.lines if level == "error"]
    assert len(errors) == 1  # not per frame
    assert errors[0].startswith("inference failed in the backend (CudaError: CUDA cudaStreamSynchronize failed: "
                                "cudaErrorLaunchFailure); the 1 frame(s) of this call are dropped")
    assert "Traceback (most recent call last)" in errors[0] and "raise outcome" in errors[0]
    assert camera.stats.rejected == {"backend": 2} and camera.rejected == []  # no "dropped input" line
    assert len(worker.depth_turn([(0, frame(3))])) == 1  # the next frame runs
    assert camera.depths == [3] and worker.status() is None and stops == []
    assert logger.lines[-1] == ("info", "inference recovered after 2 failed backend call(s) (last: CudaError: CUDA "
                                        "cudaStreamSynchronize failed: cudaErrorLaunchFailure)")


def test_a_persisting_backend_error_stops_serving_with_one_line():
    worker, camera, logger, stops = worker_for([LOST_CONTEXT] * 5, failures_before_stop=3)
    for second in range(3):
        worker.depth_turn([(0, frame(second))])
    reason = ("the backend failed 3 calls in a row (last: CudaError: CUDA cudaStreamSynchronize failed: "
              "cudaErrorLaunchFailure); a lost CUDA context does not recover inside a process: restart the node")
    assert stops == [(reason, EXIT_BACKEND_FAILED)]
    assert [text for _, text in logger.lines] [1:] == [f"stopped serving: {reason}"]
    assert worker.status() == ("ERROR", f"stopped serving: {reason}")
    assert worker.frames.closed and camera.depths == []


def serve_until_stopped(worker, stops, second: int = 1):
    """Start the worker, give it the frame of ``second``, wait (10 s at most) for it to stop on its own, then stop
    it (which joins its threads)."""
    worker.start()
    worker.frames.put(0, frame(second))
    deadline = time.monotonic() + 10
    while not stops and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.stop(timeout=5)


def test_a_programming_error_ends_the_threads_loudly_not_as_a_dropped_frame():
    worker, camera, logger, stops = worker_for([AttributeError("'NoneType' object has no attribute 'shape'")])
    serve_until_stopped(worker, stops, 7)
    assert not any(thread.is_alive() for thread in worker._threads)
    reason = "a programming error in the inference thread: AttributeError: 'NoneType' object has no attribute 'shape'"
    assert stops == [(reason, EXIT_BUG)]
    first = logger.lines[0][1]
    assert first.startswith("processing stopped: a programming error in the inference thread (a bug, not a bad frame")
    assert "Traceback (most recent call last)" in first and "AttributeError: 'NoneType' object" in first
    assert logger.lines[1] == ("error", f"stopped serving: {reason}")
    assert camera.rejected == [] and camera.depths == []




def test_a_programming_error_in_the_instance_thread_stops_every_thread():
    worker, camera, logger, stops = worker_for([])
    worker.pipeline.add_instances = lambda *args: [][1]  # IndexError: a bug in the instance stage
    serve_until_stopped(worker, stops)
    assert stops == [("a programming error in the instances thread: IndexError: list index out of range", EXIT_BUG)]
    assert not any(thread.is_alive() for thread in worker._threads)  # the inference thread saw the stop too
    assert camera.depths == [1] and camera.instances == [] and camera.rejected == []


def test_a_programming_error_in_the_depth_thread_stops_all_three_threads():
    worker, camera, logger, stops = worker_for([])
    worker.pipeline.finish_depth = lambda item, inferred: None.shape  # AttributeError in the depth stage
    serve_until_stopped(worker, stops)
    assert stops == [("a programming error in the depth thread: AttributeError: 'NoneType' object has no attribute "
                      "'shape'", EXIT_BUG)]
    assert not any(thread.is_alive() for thread in worker._threads)
    assert camera.depths == [] and camera.instances == []


def test_a_frame_failing_after_inference_is_rejected_alone():
    """Mapping one frame's depth back fails (a bad geometry, say): that frame is dropped on its camera, the
    other frame of the batch is published."""
    camera, logger = Camera(), Logger()
    pipeline = Batch2Pipeline([])
    finish = pipeline.finish_depth
    pipeline.finish_depth = lambda item, inferred: (
        finish(item, inferred) if item.rgb.shape[0] == 2 else (_ for _ in ()).throw(ValueError("no window")))
    worker = InferenceWorker(pipeline, [camera, camera], RoundRobinFrames(2), "none", logger=logger)
    odd = frame(2)
    odd.rgb = np.zeros((3, 3, 3), np.uint8)
    turn = worker.depth_turn([(0, frame(1)), (1, odd)])
    assert [entry[1].header.stamp.sec for entry in turn] == [1] and camera.depths == [1]
    assert camera.rejected == [("processing", "processing the frame stamped 2.000000 failed: ValueError('no window')")]
    assert pipeline.calls == 1  # one inference for both: the post-processing error is not retried


def test_the_next_inference_runs_while_the_previous_frame_is_published():
    """The three stages overlap: inference of frame 2 starts before frame 1's depth is published."""
    worker, camera, logger, stops = worker_for([])
    events, published = [], threading.Event()
    infer = worker.pipeline.infer_batch

    def slow_publish(frame_, result):
        events.append(("publish start", frame_.header.stamp.sec))
        if frame_.header.stamp.sec == 1:  # released by the second inference: times out where the stages run in turn
            events.append(("released", published.wait(3)))
        camera.depths.append(frame_.header.stamp.sec)

    def recorded_infer(items):
        events.append(("infer", worker.pipeline.calls + 1))
        if worker.pipeline.calls == 1:
            published.set()  # the second inference runs: let the first publication end
        return infer(items)

    camera.publish_depth, worker.pipeline.infer_batch = slow_publish, recorded_infer
    worker.start()
    worker.frames.put(0, frame(1))
    deadline = time.monotonic() + 5
    while ("publish start", 1) not in events and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.frames.put(0, frame(2))
    while camera.depths != [1, 2] and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop(timeout=5)
    assert events[:4] == [("infer", 1), ("publish start", 1), ("infer", 2), ("released", True)]
    assert camera.depths == [1, 2]


def test_a_frame_error_is_still_a_dropped_input_of_that_camera():
    worker, camera, logger, stops = worker_for([ValueError("labels 4x4 do not match the image 2x2")])
    assert worker.depth_turn([(0, frame(5))]) == []
    assert camera.rejected == [("processing", "processing the frame stamped 5.000000 failed: "
                                              "ValueError('labels 4x4 do not match the image 2x2')")]
    assert worker.status() is None and stops == [] and logger.lines == []


def test_failures_before_stop_must_be_positive():
    with pytest.raises(ValueError, match="failures_before_stop must be >= 1, got 0"):
        worker_for([], failures_before_stop=0)


def test_stop_ends_every_thread_while_a_turn_waits():
    worker, camera, logger, stops = worker_for([])
    release = threading.Event()
    worker.pipeline.add_instances = lambda *args: release.wait(5)  # the instance thread holds a turn
    worker.start()
    for second in range(3):
        worker.frames.put(0, frame(second))
        time.sleep(0.05)
    release.set()
    worker.stop(timeout=5)
    assert not any(thread.is_alive() for thread in worker._threads) and stops == []


class Batch2Pipeline(Pipeline):
    max_batch = 2


def test_a_backend_error_while_retrying_a_failed_batch_alone_is_counted_not_a_bug():
    camera, logger, stops = Camera(), Logger(), []
    pipeline = Batch2Pipeline([ValueError("one frame's labels do not fit"), LOST_CONTEXT])
    worker = InferenceWorker(pipeline, [camera, camera], RoundRobinFrames(2), "none", logger=logger,
                             on_stop=lambda reason, status: stops.append((reason, status)))
    assert worker.depth_turn([(0, frame(1)), (1, frame(2))]) == []
    assert worker.failed_calls == 1 and camera.stats.rejected == {"backend": 2} and stops == []
    assert logger.lines[0][1].startswith("inference failed in the backend (CudaError: ")


def test_frames_rejected_for_their_own_errors_do_not_end_a_backend_failure_streak():
    worker, camera, logger, stops = worker_for([LOST_CONTEXT, ValueError("bad frame")])
    worker.depth_turn([(0, frame(1))])
    worker.depth_turn([(0, frame(2))])  # rejected before the backend could show it works again
    assert worker.failed_calls == 1 and worker.status()[0] == "ERROR"
    assert not any(text.startswith("inference recovered") for _, text in logger.lines)


def test_an_unexpected_error_escaping_a_turn_is_not_swallowed():
    worker, camera, logger, stops = worker_for([])
    camera.labels_for = lambda frame: (_ for _ in ()).throw(RuntimeError("label buffer corrupted"))
    serve_until_stopped(worker, stops, 4)
    assert stops == [("an unexpected error in the inference thread: RuntimeError: label buffer corrupted", EXIT_BUG)]
    assert logger.lines[0][1].startswith("processing stopped: an unexpected error in the inference thread")


def test_cleanup_closes_the_backend(onnx_model):
    """on_cleanup releases the backend's GPU resources (TensorRTBackend.close) at once."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from icm_depth_ros.depth_node import DepthNode
    from icm_depth_ros.node.local_graph import pick_domain_id

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=pick_domain_id())
    try:
        node = DepthNode(context=context, parameter_overrides=[
            Parameter("model_path", value=str(onnx_model)), Parameter("backend", value="onnxruntime"),
            Parameter("autostart", value=False), Parameter("publish_diagnostics", value=False)])
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        closed = []
        node.pipeline.backend.close = lambda: closed.append(True)
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert closed == [True] and node.pipeline is None
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
