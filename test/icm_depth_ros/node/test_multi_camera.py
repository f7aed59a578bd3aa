"""One depth_node serving several cameras (cameras parameter) in a real ROS graph: per-camera outputs equal
what one camera alone gets, a bad camera is rejected on its own, a busy camera does not starve the others."""
from __future__ import annotations

import time

import numpy as np
import pytest

from conftest import MODEL_SIZE, make_camera_info, make_image, stamp_of

pytestmark = [pytest.mark.ros, pytest.mark.slow]


class Cameras:
    """The probe's publishers and recorders for each camera namespace."""

    def __init__(self, probe, names):
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        self.probe, self.image, self.info, self.received = probe, {}, {}, {}
        for name in names:
            self.image[name] = probe.node.create_publisher(Image, f"{name}/image", qos_profile_sensor_data)
            self.info[name] = probe.node.create_publisher(CameraInfo, f"{name}/camera_info", qos_profile_sensor_data)
            for topic, kind in (("depth/image", Image), ("depth/camera_info", CameraInfo), ("depth/instances", PointCloud2)):
                self.received[f"{name}/{topic}"] = {}
                probe.node.create_subscription(kind, f"{name}/{topic}", self._recorder(f"{name}/{topic}"), 10)

    def _recorder(self, key):
        def record(msg):
            self.received[key][(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg
        return record

    def wait_for_subscribers(self, timeout=60.0) -> bool:
        return self.probe.wait_for(lambda: all(p.get_subscription_count() > 0 for p in self.image.values()), timeout)

    def outputs(self, name, stamp) -> bool:
        key = (stamp.sec, stamp.nanosec)
        return all(key in self.received[f"{name}/{topic}"] for topic in ("depth/image", "depth/camera_info", "depth/instances"))


def offline(model, frame):
    from icm_depth_ros.processing.pipeline import DepthPipeline, PipelineConfig

    pipeline = DepthPipeline.from_config(PipelineConfig(model_path=str(model), backend="onnxruntime"))
    return pipeline.process(frame["image"], frame["K"])


def start_cameras(graph, onnx_model, names, **parameters):
    start_node, probe, _ = graph
    node = start_node({"model_path": onnx_model, "backend": "onnxruntime", "cameras": f"[{','.join(names)}]",
                       "diagnostics_period_s": 0.5, **parameters})
    cameras = Cameras(probe, names)
    assert node.wait_for_log("active", 60), node.log()
    assert cameras.wait_for_subscribers(), node.log()
    return node, probe, cameras


@pytest.mark.parametrize("batch", ["static", "dynamic"])
def test_each_camera_gets_its_own_outputs_as_a_single_camera_would(graph, onnx_model, dynamic_batch_model, batch):
    """Static model: frame by frame; dynamic-batch model: the two cameras' frames in one inference."""
    from training.data.synthetic import render_scene

    from icm_depth_ros.processing.image_conversion import image_to_array
    from icm_depth_ros.instances.messages import cloud_to_array, instances_to_array

    model = onnx_model if batch == "static" else dynamic_batch_model
    node, probe, cameras = start_cameras(graph, model, ["front", "rear"])
    assert "/front/image" in node.log() and "/rear/image" in node.log()
    assert f"batches of up to {1 if batch == 'static' else 2}" in node.log()
    frames = {"front": render_scene(11, MODEL_SIZE), "rear": render_scene(12, MODEL_SIZE)}
    frames["rear"]["K"] = frames["rear"]["K"] * np.array([[0.9], [0.9], [1.0]])  # a different lens
    stamps = {"front": stamp_of(5000, 1), "rear": stamp_of(5000, 2)}
    for name in frames:
        info = make_camera_info(stamps[name], MODEL_SIZE[1], MODEL_SIZE[0], frames[name]["K"], f"{name}_optical")
        for _ in range(3):
            cameras.info[name].publish(info)
            probe.spin(0.1)
    for _ in range(20):  # best effort: resend until both cameras' outputs are in
        for name in frames:
            if not cameras.outputs(name, stamps[name]):
                cameras.image[name].publish(make_image(stamps[name], frames[name]["image"], "rgb8", f"{name}_optical"))
        if probe.wait_for(lambda: all(cameras.outputs(n, stamps[n]) for n in frames), 1.5):
            break
    for name, frame in frames.items():
        key = (stamps[name].sec, stamps[name].nanosec)
        assert cameras.outputs(name, stamps[name]), f"{name}: no outputs\n{node.log()}"
        expected = offline(onnx_model, frame)  # the static model alone: same weights
        depth_msg = cameras.received[f"{name}/depth/image"][key]
        assert depth_msg.header.frame_id == f"{name}_optical" and depth_msg.encoding == "32FC1"
        np.testing.assert_allclose(image_to_array(depth_msg), expected.depth, rtol=1e-4)
        info = cameras.received[f"{name}/depth/camera_info"][key]
        assert (info.height, info.width) == MODEL_SIZE and info.header.frame_id == f"{name}_optical"
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)), frame["K"])
        published = cloud_to_array(cameras.received[f"{name}/depth/instances"][key])
        reference = instances_to_array(expected.instances)
        assert len(published) == len(reference) > 0
        for field in reference.dtype.names:  # batched convolutions round differently: a median may move a pixel
            np.testing.assert_allclose(published[field], reference[field], rtol=3e-3, err_msg=f"{name} {field}")
    def statuses():
        return {s.name: {kv.key: kv.value for kv in s.values} for s in probe.diagnostics[-1].status}

    # the counters are updated just after publishing: wait for a /diagnostics that has both frames
    assert probe.wait_for(lambda: probe.diagnostics and len(statuses()) == 2 and all(
        int(v["processed_frames"]) >= 1 for v in statuses().values()), 10), statuses()
    assert set(statuses()) == {"/depth_node: front depth", "/depth_node: rear depth"}
    assert statuses()["/depth_node: front depth"]["camera"] == "/front/image"


def test_a_bad_camera_is_rejected_alone(graph, onnx_model):
    from training.data.synthetic import render_scene

    node, probe, cameras = start_cameras(graph, onnx_model, ["good", "bad"])
    frame = render_scene(13, MODEL_SIZE)
    bad = make_image(stamp_of(1), np.zeros(MODEL_SIZE, np.float32), "32FC1")  # a depth image on a camera topic
    delivered = 0
    for index in range(15):
        stamp = stamp_of(6000 + index)
        cameras.image["bad"].publish(bad)
        cameras.image["good"].publish(make_image(stamp, frame["image"], "rgb8"))
        probe.wait_for(lambda: cameras.outputs("good", stamp), 1.0)
        delivered += cameras.outputs("good", stamp)
    assert delivered >= 10, node.log()
    assert not any(cameras.received["bad/depth/image"].values())
    assert "dropped input [not_color]" in node.log() and "/bad/image" in node.log()
    assert probe.wait_for(lambda: any(len(d.status) == 2 for d in probe.diagnostics), 10)
    statuses = {s.name: s for s in probe.diagnostics[-1].status}
    bad_status, good_status = statuses["/depth_node: bad depth"], statuses["/depth_node: good depth"]
    assert bad_status.level == bad_status.WARN and "not_color" in bad_status.message
    assert good_status.level == good_status.OK
    assert {kv.key: kv.value for kv in good_status.values}["rejected_frames"] == "0"


def test_a_flooding_camera_does_not_starve_a_slow_one(graph, onnx_model):
    """'busy' sends as fast as the probe can (faster than any model here: it must lose frames), 'quiet' at 4 Hz:
    every quiet frame that reaches the node is served."""
    from training.data.synthetic import render_scene

    node, probe, cameras = start_cameras(graph, onnx_model, ["busy", "quiet"])
    image = render_scene(14, MODEL_SIZE)["image"]
    quiet_stamps, start, index, next_quiet = [], time.monotonic(), 0, time.monotonic()
    while time.monotonic() - start < 6.0:
        index += 1
        cameras.image["busy"].publish(make_image(stamp_of(7000, index), image, "rgb8"))
        if time.monotonic() >= next_quiet:
            next_quiet += 0.25
            stamp = stamp_of(8000, index)
            cameras.image["quiet"].publish(make_image(stamp, image, "rgb8"))
            quiet_stamps.append(stamp)
        probe.spin(0.002)
    probe.spin(2.0)
    quiet_served = sum(cameras.outputs("quiet", s) for s in quiet_stamps)
    busy_served = len(cameras.received["busy/depth/image"])
    assert busy_served >= 10, node.log()
    assert quiet_served >= 0.8 * len(quiet_stamps), (quiet_served, len(quiet_stamps), node.log())
    statuses = {s.name: {kv.key: kv.value for kv in s.values} for s in probe.diagnostics[-1].status}
    quiet = statuses["/depth_node: quiet depth"]
    # replaced while waiting only if a whole quiet period (0.25 s) passed without its turn (a loaded machine)
    assert int(quiet["dropped_frames"]) <= 0.1 * len(quiet_stamps), quiet
    assert int(statuses["/depth_node: busy depth"]["dropped_frames"]) > 0  # busy is the one that loses frames


def test_bad_cameras_parameter_is_named(graph, onnx_model):
    start_node, _, _ = graph
    node = start_node({"model_path": onnx_model, "backend": "onnxruntime", "cameras": "[front,front]"})
    node.process.wait(timeout=60)
    assert node.process.returncode == 1
    assert "parameter cameras names front more than once" in node.log()


# (TensorRT, cuda-python): JetPack 6, JetPack 7, pip on a CUDA 13 machine
TENSORRT_RUNTIMES = [("10.3.0", "12.9.6"), ("10.13.3.9", "13.5.0"), ("11.4.0.106", "13.5.0")]


@pytest.mark.parametrize("runtime", TENSORRT_RUNTIMES, ids=lambda pair: f"tensorrt{pair[0]}-cuda{pair[1]}")
def test_three_cameras_share_tensorrt_engine_calls_under_the_bindings_double(graph, tmp_path, runtime):
    """backend:=tensorrt cameras:=front,left,right with a dynamic-batch model: the node builds the engine for
    three cameras (profile 1..3), batches the waiting cameras' frames into one call, and each camera's depth is
    what DepthPipeline.process gives for its frame alone through the same double. The node process is the real
    depth_node; only tensorrt and cuda.bindings.runtime are the doubles of the real bindings of that version
    (test/tensorrt_double/node_process.py), each call taking 0.15 s as a GPU inference would take some time."""
    import json
    import sys
    from pathlib import Path

    from training.data.synthetic import render_scene

    from conftest import ros_environment
    from icm_depth_ros.processing.image_conversion import image_to_array

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # test/: the tensorrt_double package
    from tensorrt_double.models import shipped_model_and_variants
    from tensorrt_double.setup_bindings import node_environment, run_scenario, skip_without_runtime

    version, cuda_version = runtime
    skip_without_runtime(version, cuda_version)
    files = shipped_model_and_variants(tmp_path / "model", dynamic_batch=True)
    engine = tmp_path / "model" / "model.engine"  # not there yet: the node builds it (allow_engine_build)
    start_node, probe, domain_id = graph
    batch_log = tmp_path / "batches.log"
    command, env = node_environment(version, cuda_version, ros_environment(domain_id), batch_log=batch_log,
                                    execute_s=0.15)
    names = ["front", "left", "right"]
    node = start_node({"model_path": str(engine), "onnx_path": str(files["fp32"]), "backend": "tensorrt",
                       "precision": "fp16", "allow_engine_build": True, "cameras": f"[{','.join(names)}]",
                       "diagnostics_period_s": 0.5}, command=command, node_env=env)
    cameras = Cameras(probe, names)
    assert node.wait_for_log("active", 60), node.log()
    assert cameras.wait_for_subscribers(), node.log()
    assert f"tensorrt {version} (model.engine, batch 1-3, opt 3)" in node.log()
    assert "(batches of up to 3)" in node.log()
    assert json.loads(engine.with_name("model.engine.fingerprint.json").read_text())["max_batch"] == 3

    frames = {name: render_scene(31 + index, MODEL_SIZE) for index, name in enumerate(names)}
    sent = {name: [] for name in names}
    for round_index in range(16):  # all three cameras at 10 Hz; an engine call takes 0.15 s
        for index, name in enumerate(names):
            stamp = stamp_of(9000 + round_index, index)
            cameras.info[name].publish(make_camera_info(stamp, MODEL_SIZE[1], MODEL_SIZE[0], frames[name]["K"]))
            cameras.image[name].publish(make_image(stamp, frames[name]["image"], "rgb8"))
            sent[name].append(stamp)
        probe.spin(0.1)
    probe.spin(1.5)

    batches = [int(line) for line in batch_log.read_text().split()]
    assert batches and max(batches) == 3 and min(batches) >= 1, batches  # never above the engine's profile
    assert batches.count(3) >= 3, batches  # the waiting cameras share calls
    np.savez(tmp_path / "frames.npz", **{name: frames[name]["image"] for name in names})
    reference = run_scenario(version, cuda_version, [{
        "kind": "pipeline", "model_path": str(engine), "onnx_path": str(files["fp32"]), "precision": "fp16",
        "frames": str(tmp_path / "frames.npz"), "out": str(tmp_path / "alone.npz")}])["results"][0]
    assert reference["ok"], reference.get("traceback")
    assert reference["executed_batches"] == [1, 1, 1]  # the reference: each frame alone
    alone = np.load(tmp_path / "alone.npz")
    for name in names:
        served = [stamp for stamp in sent[name] if cameras.outputs(name, stamp)]
        assert len(served) >= 8, (name, len(served), node.log())  # a third of the frames would be starvation
        for stamp in served:
            depth = image_to_array(cameras.received[f"{name}/depth/image"][(stamp.sec, stamp.nanosec)])
            np.testing.assert_allclose(depth, alone[name], rtol=1e-6, equal_nan=True, err_msg=name)
