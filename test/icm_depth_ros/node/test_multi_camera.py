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
    """'busy' sends as fast as the probe can, 'quiet' at 4 Hz: every quiet frame that reaches the node is served."""
    from training.data.synthetic import render_scene

    node, probe, cameras = start_cameras(graph, onnx_model, ["busy", "quiet"])
    image = render_scene(14, MODEL_SIZE)["image"]
    quiet_stamps, start, index = [], time.monotonic(), 0
    while time.monotonic() - start < 6.0:
        index += 1
        cameras.image["busy"].publish(make_image(stamp_of(7000, index), image, "rgb8"))
        if index % 10 == 0:
            stamp = stamp_of(8000, index)
            cameras.image["quiet"].publish(make_image(stamp, image, "rgb8"))
            quiet_stamps.append(stamp)
        probe.spin(0.025)
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
