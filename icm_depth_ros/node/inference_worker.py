"""The processing threads of a depth_node: the cameras' newest frames in turn -> depth -> instances -> published.

One backend (one ONNX Runtime session, one TensorRT engine and context) serves every camera. Three threads
form a three-stage pipeline, so that the host work around frame N (mapping its depth back, publishing,
its instances) overlaps the inference of frame N + 1, and a frame's depth is never held up by the previous
frame's instances:

    inference thread:  take up to ``pipeline.max_batch`` waiting frames from RoundRobinFrames (one for a
                       static-batch model, every waiting camera for a dynamic-batch one), wait for their
                       label images (instance_source topic), preprocess + infer, hand them on
    depth thread:      map the depth back to the output grid, publish depth/image and
                       depth/camera_info, hand the frames on
    instance thread:   instance statistics, publish depth/instances (and markers)

Each hand-over holds one turn: a stage waits for the next rather than running ahead, so every frame whose
depth is published also gets its instances, and memory stays flat. With an engine on the GPU the
inference thread is back at the engine after its pre-processing alone (the camera's pixels resized and
copied, about 1 ms at 1242x375; docs/node.md), instead of after the depth's post-processing and
publishing as well. On a CPU the stages share the cores with inference (ONNX Runtime and most large
numpy operations release the GIL).

A frame that fails (bad labels, a processing error) is rejected on its own camera only: if a batch
fails, its frames are retried one by one, so the others are still published.

Failures of the backend itself (InferenceError: a CUDA or TensorRT error) and programming errors are not
a frame's fault and are not dropped quietly (docs/node.md, "When the GPU fails"):

    InferenceError     the call's frames are lost (counted as rejected [backend] on their cameras); the
                       first failure, and each new kind of failure, is logged once with its traceback;
                       ``status()`` is ERROR naming it (the node's /diagnostics) until a call succeeds; the
                       next frames are tried. After ``failures_before_stop`` failing calls in a row (a lost
                       CUDA context fails every following call) the worker stops serving: one line says so
                       and ``on_stop(reason, EXIT_BACKEND_FAILED)`` is called.
    programming error  (PROGRAMMING_ERRORS: TypeError, AttributeError, NameError, ...) in either thread:
                       logged with its traceback, the worker stops, ``on_stop(reason, EXIT_BUG)``.
"""
from __future__ import annotations

import queue
import threading
import traceback

from icm_depth_ros.inference.contract import InferenceError
from icm_depth_ros.node.camera_channel import CameraChannel, Frame
from icm_depth_ros.node.frame_scheduler import RoundRobinFrames
from icm_depth_ros.node.input_checks import InputError, stamp_seconds
from icm_depth_ros.processing.pipeline import FrameInput

_STOP = object()  # tells the instance thread to end

FAILURES_BEFORE_STOP = 10  # backend calls failing in a row before the worker stops serving
EXIT_BACKEND_FAILED = 3  # depth_node's exit status when the backend kept failing
EXIT_BUG = 4  # depth_node's exit status after a programming error in the processing threads
# Exceptions that are bugs in this package or its use of a library, never a property of one frame's data.
PROGRAMMING_ERRORS = (TypeError, AttributeError, NameError, AssertionError, IndexError, KeyError, ZeroDivisionError,
                      NotImplementedError, RecursionError, SyntaxError)


class ProgrammingError(Exception):
    """Carries a programming error out of a turn, so that the thread's loop stops on it."""


def _raise_if_bug(error: BaseException) -> None:
    if isinstance(error, PROGRAMMING_ERRORS):
        raise ProgrammingError(error) from error


def _with_traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()


class InferenceWorker:
    """Runs ``pipeline`` on the frames of ``channels`` (indexed as in ``frames``) until stopped."""

    def __init__(self, pipeline, channels: list[CameraChannel], frames: RoundRobinFrames, instance_source: str, *,
                 logger, on_stop=None, failures_before_stop: int = FAILURES_BEFORE_STOP):
        """logger: the node's (error/info). on_stop(reason, exit status): called once, from the failing
        thread, when the worker stops serving on its own (not after ``stop()``)."""
        self.pipeline, self.channels, self.frames = pipeline, channels, frames
        self.instance_source = instance_source
        self.max_batch = min(pipeline.max_batch, len(channels))
        self.logger, self.on_stop = logger, on_stop
        if failures_before_stop < 1:
            raise ValueError(f"failures_before_stop must be >= 1, got {failures_before_stop}")
        self.failures_before_stop = failures_before_stop
        self.failed_calls = 0  # backend calls failing in a row
        self._failure: str | None = None  # the last backend failure of the current streak, for status()
        self._logged_failures: set[str] = set()  # kinds logged with a traceback in the current streak
        self.stopped_reason: str | None = None  # set when the worker stopped serving on its own
        self._stopped = threading.Event()
        self._inferred: queue.Queue = queue.Queue(maxsize=1)  # [(channel, frame, FrameInput, InferredFrame)]
        self._turns: queue.Queue = queue.Queue(maxsize=1)  # [(channel, frame, FrameInput, result, ClusterMaps)]
        self._threads = [threading.Thread(target=self._run_inference, name="inference", daemon=True),
                         threading.Thread(target=self._run_depth, name="depth", daemon=True),
                         threading.Thread(target=self._run_instances, name="instances", daemon=True)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopped.set()
        self.frames.close()
        for thread in self._threads:  # each puts _STOP for the next when it ends
            thread.join(timeout=timeout)

    # ---- inference thread ---------------------------------------------------------------------------
    def status(self) -> tuple[str, str] | None:
        """("ERROR", text) while the backend is failing or after the worker stopped; None when serving."""
        if self.stopped_reason is not None:
            return "ERROR", f"stopped serving: {self.stopped_reason}"
        if self._failure is not None:
            return "ERROR", f"backend failing ({self.failed_calls} call(s) in a row): {self._failure}"
        return None

    def _run_inference(self) -> None:
        try:
            while not self._stopped.is_set():
                taken = self.frames.take(self.max_batch, timeout=0.5)
                if not taken:
                    if self.frames.closed:
                        return
                    continue
                self._hand_on(self._inferred, self.infer_turn(taken))  # blocks while the depth thread is busy
        except ProgrammingError as error:
            self._stop_serving(error.__cause__, "inference")
        except Exception as error:  # noqa: BLE001 - escaped a turn: not a frame's problem, never swallowed
            self._stop_serving(error, "inference")
        finally:
            self._pass_stop(self._inferred, self._threads[1])

    def _hand_on(self, stage: queue.Queue, turn: list) -> None:
        """Put a non-empty turn into the next stage's one-turn queue, waiting while it is full (not once stopped)."""
        while turn and not self._stopped.is_set():
            try:
                stage.put(turn, timeout=0.5)
                return
            except queue.Full:
                continue

    @staticmethod
    def _pass_stop(stage: queue.Queue, reader: threading.Thread) -> None:
        """Tell the next stage's thread to end, after the turn it holds (unless it has ended already)."""
        while reader.is_alive():
            try:
                stage.put(_STOP, timeout=0.5)
                return
            except queue.Full:
                continue

    def depth_turn(self, taken: list[tuple[int, Frame]]) -> list[tuple]:
        """Infer [(camera index, frame)] and publish their depth, in this thread: ``infer_turn`` then
        ``output_turn`` (the threads run the two); returns what the instance stage needs."""
        return self.output_turn(self.infer_turn(taken))

    def infer_turn(self, taken: list[tuple[int, Frame]]) -> list[tuple]:
        """Pre-process and infer [(camera index, frame)]: [(channel, frame, FrameInput, InferredFrame)] for the
        frames that were not rejected."""
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
            outputs = self.pipeline.infer_batch([item for _, _, item in ready])
        except InferenceError as error:  # the backend failed, not a frame: every frame of the call is lost
            self._backend_failed(error, ready)
            return []
        except Exception as error:  # noqa: BLE001 - keep the node alive; find the frame that failed
            _raise_if_bug(error)
            try:
                outputs = [None] * len(ready) if len(ready) == 1 else [self._infer_alone(entry) for entry in ready]
            except InferenceError as backend_error:  # retried alone, the backend itself failed
                self._backend_failed(backend_error, ready)
                return []
            if len(ready) == 1:
                ready[0][0].reject(_processing_error(ready[0][1], error))
        if any(output is not None for output in outputs):  # the backend ran (not only rejected frames)
            self._backend_ran()
        return [(channel, frame, item, output) for (channel, frame, item), output in zip(ready, outputs)
                if output is not None]

    def output_turn(self, inferred: list[tuple]) -> list[tuple]:
        """Map each inferred frame's depth back and publish it; a frame that fails is rejected on its camera alone.
        Returns what the instance stage needs: [(channel, frame, FrameInput, result, ClusterMaps)]."""
        turn = []
        for channel, frame, item, output in inferred:
            try:
                result, maps = self.pipeline.finish_depth(item, output)
                channel.publish_depth(frame, result)
            except Exception as error:  # noqa: BLE001
                _raise_if_bug(error)
                channel.reject(_processing_error(frame, error))
                continue
            turn.append((channel, frame, item, result, maps))
        return turn

    def _infer_alone(self, entry):
        """A frame of a failed batch on its own: its InferredFrame, or None (rejected on its camera)."""
        channel, frame, item = entry
        try:
            return self.pipeline.infer_batch([item])[0]
        except InferenceError:
            raise  # the backend, not this frame: depth_turn counts it
        except Exception as error:  # noqa: BLE001
            _raise_if_bug(error)
            channel.reject(_processing_error(frame, error))
            return None

    def _backend_failed(self, error: InferenceError, ready: list[tuple]) -> None:
        """Count a failed backend call; log each kind once per streak (with its traceback); stop when it persists."""
        self.failed_calls += 1
        self._failure = f"{type(error).__name__}: {error}"
        for channel, _, _ in ready:
            channel.stats.on_rejected("backend")
        if self._failure not in self._logged_failures:
            self._logged_failures.add(self._failure)
            self.logger.error(f"inference failed in the backend ({self._failure}); the {len(ready)} frame(s) of this "
                              "call are dropped and the next frames are tried; this error is logged once while it "
                              f"repeats\n{_with_traceback(error)}")
        if self.failed_calls >= self.failures_before_stop:
            reason = (f"the backend failed {self.failed_calls} calls in a row (last: {self._failure}); a lost CUDA "
                      "context does not recover inside a process: restart the node")
            self._finish(reason, EXIT_BACKEND_FAILED)

    def _backend_ran(self) -> None:
        if self.failed_calls:
            self.logger.info(f"inference recovered after {self.failed_calls} failed backend call(s) (last: {self._failure})")
        self.failed_calls, self._failure, self._logged_failures = 0, None, set()

    def _stop_serving(self, error: BaseException, thread: str) -> None:
        """A programming error (or anything else escaping a turn): traceback, then stop serving."""
        kind = "a programming error" if isinstance(error, PROGRAMMING_ERRORS) else "an unexpected error"
        self.logger.error(f"processing stopped: {kind} in the {thread} thread (a bug, not a bad frame; please report "
                          f"it with this traceback)\n{_with_traceback(error)}")
        self._finish(f"{kind} in the {thread} thread: {type(error).__name__}: {error}", EXIT_BUG)

    def _finish(self, reason: str, exit_status: int) -> None:
        """Stop serving on our own: one line, the status, on_stop; both threads end."""
        if self.stopped_reason is not None:
            return
        self.stopped_reason = reason
        self._stopped.set()
        self.frames.close()
        self.logger.error(f"stopped serving: {reason}")
        if self.on_stop is not None:
            self.on_stop(reason, exit_status)

    # ---- depth thread -------------------------------------------------------------------------------
    def _run_depth(self) -> None:
        try:
            while True:
                inferred = self._inferred.get()
                if inferred is _STOP:
                    return
                self._hand_on(self._turns, self.output_turn(inferred))  # blocks while the instance thread is busy
        except ProgrammingError as error:
            self._stop_serving(error.__cause__, "depth")
        except Exception as error:  # noqa: BLE001 - escaped a turn: never swallowed
            self._stop_serving(error, "depth")
        finally:
            self._pass_stop(self._turns, self._threads[2])

    # ---- instance thread ----------------------------------------------------------------------------
    def _run_instances(self) -> None:
        while True:
            turn = self._turns.get()
            if turn is _STOP:
                return
            try:
                self.instance_turn(turn)
            except ProgrammingError as error:
                self._stop_serving(error.__cause__, "instances")
                return
            except Exception as error:  # noqa: BLE001 - escaped a turn: never swallowed
                self._stop_serving(error, "instances")
                return

    def instance_turn(self, turn: list[tuple]) -> None:
        for channel, frame, item, result, maps in turn:
            try:
                self.pipeline.add_instances(item, result, maps, self.instance_source)
                channel.publish_instances(frame, result)
            except Exception as error:  # noqa: BLE001
                _raise_if_bug(error)
                channel.reject(_processing_error(frame, error))


def _processing_error(frame: Frame, error: Exception) -> InputError:
    return InputError("processing", f"processing the frame stamped {stamp_seconds(frame.header.stamp):.6f} "
                                    f"failed: {error!r}")
