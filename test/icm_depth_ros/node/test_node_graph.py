"""depth_node in a real ROS graph: separate processes, private ROS_DOMAIN_ID, localhost discovery."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import MODEL_SIZE, make_camera_info, make_image, stamp_of

pytestmark = [pytest.mark.ros, pytest.mark.slow]

K_CAMERA = np.array([[240.0, 0.0, 160.5], [0.0, 240.0, 47.5], [0.0, 0.0, 1.0]])


def synthetic_frame(size, seed=3):
    from training.data.synthetic import render_scene

    return render_scene(seed, size)


def offline_pipeline(model, **config):
    from icm_depth_ros.processing.pipeline import DepthPipeline, PipelineConfig

    return DepthPipeline.from_config(PipelineConfig(model_path=str(model), backend="onnxruntime", **config))


def send_until_output(probe, stamp, image_msg, info_msg=None, label_msg=None, timeout=30.0) -> bool:
    """Best-effort QoS may drop a message: resend the frame until depth/image for its stamp arrives."""
    key = (stamp.sec, stamp.nanosec)
    for _ in range(3 if info_msg is not None else 0):  # camera_info first: the image is matched to the latest
        probe.info_pub.publish(info_msg)
        probe.spin(0.2)
    for _ in range(int(timeout / 1.5)):
        if info_msg is not None:
            probe.info_pub.publish(info_msg)
        if label_msg is not None:
            probe.label_pub.publish(label_msg)
            probe.spin(0.05)
        probe.image_pub.publish(image_msg)
        if probe.wait_for(lambda: key in probe.received["depth/image"] and key in probe.received["depth/instances"]
                          and key in probe.received["depth/camera_info"], 1.5):
            return True
    return False


def test_outputs_match_the_model_run_offline(graph, onnx_model):
    from icm_depth_ros.processing.image_conversion import image_to_array
    from icm_depth_ros.instances.messages import cloud_to_array, instances_to_array

    start_node, probe, _ = graph
    node = start_node({"model_path": onnx_model, "backend": "onnxruntime", "min_instance_pixels": 40})
    assert node.wait_for_log("active", 60), node.log()
    assert probe.wait_for_subscriber(), node.log()
    frame = synthetic_frame(MODEL_SIZE)
    stamp = stamp_of(1000, 5)
    info = make_camera_info(stamp, MODEL_SIZE[1], MODEL_SIZE[0], frame["K"])
    image = make_image(stamp, frame["image"][:, :, ::-1].copy(), "bgr8")  # the node must swap BGR itself
    assert send_until_output(probe, stamp, image, info), node.log()
    key = (1000, 5)
    depth_msg = probe.received["depth/image"][key]
    assert depth_msg.encoding == "32FC1" and depth_msg.header.frame_id == "camera_optical"
    assert (depth_msg.height, depth_msg.width) == MODEL_SIZE
    depth = image_to_array(depth_msg)

    # Offline: the ONNX graph itself on the same pixels (the image already has the model's size).
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"])
    reference = session.run(["depth"], {"image": frame["image"][None]})[0]  # the graph takes the uint8 pixels
    np.testing.assert_allclose(depth, np.clip(reference[0, 0], 1e-3, 80.0), rtol=1e-5)
    assert np.ptp(depth) > 0.1  # the depth varies, so the comparison means something

    info_out = probe.received["depth/camera_info"][key]
    assert (info_out.height, info_out.width) == MODEL_SIZE and info_out.header.frame_id == "camera_optical"
    np.testing.assert_allclose(np.reshape(info_out.k, (3, 3)), frame["K"])

    cloud = probe.received["depth/instances"][key]
    assert cloud.header.frame_id == "camera_optical" and cloud.width > 0
    published = cloud_to_array(cloud)
    expected = instances_to_array(offline_pipeline(onnx_model, min_instance_pixels=40).process(frame["image"], frame["K"]).instances)
    assert published.dtype == expected.dtype and len(published) == len(expected)
    for name in expected.dtype.names:
        np.testing.assert_allclose(published[name], expected[name], rtol=1e-4, err_msg=name)
    assert (published["u1"] <= MODEL_SIZE[1]).all() and (published["v1"] <= MODEL_SIZE[0]).all()
    assert ((published["near"] <= published["median"] + 1e-6) & (published["median"] <= 80)).all()


def test_model_resolution_output_scales_camera_info(graph, onnx_model):
    from icm_depth_ros.processing.image_conversion import image_to_array

    start_node, probe, _ = graph
    node = start_node({"model_path": onnx_model, "backend": "onnxruntime", "output_resolution": "model",
                       "resize_policy": "letterbox", "publish_diagnostics": True, "diagnostics_period_s": 0.5})
    assert node.wait_for_log("active", 60), node.log()
    assert probe.wait_for_subscriber(), node.log()
    size = (150, 600)  # aspect 4:1 against the model's 3.33:1 -> letterbox pads top and bottom
    frame = synthetic_frame(size, seed=5)
    stamp = stamp_of(2000)
    info = make_camera_info(stamp, size[1], size[0], frame["K"])
    assert send_until_output(probe, stamp, make_image(stamp, frame["image"], "rgb8"), info), node.log()
    key = (2000, 0)
    depth = image_to_array(probe.received["depth/image"][key])
    assert depth.shape == MODEL_SIZE
    offline = offline_pipeline(onnx_model, output_resolution="model", resize_policy="letterbox").process(frame["image"], frame["K"])
    np.testing.assert_allclose(depth, offline.depth, rtol=1e-5)
    assert np.isnan(depth[0]).all() and np.isfinite(depth[MODEL_SIZE[0] // 2]).all()  # padding rows: no estimate
    info_out = probe.received["depth/camera_info"][key]
    K_out = np.reshape(info_out.k, (3, 3))
    np.testing.assert_allclose(K_out[0, 0], frame["K"][0, 0] * MODEL_SIZE[1] / size[1])
    np.testing.assert_allclose(np.reshape(info_out.p, (3, 4))[:, :3], K_out)
    assert probe.wait_for(lambda: any(s.values for d in probe.diagnostics for s in d.status), 10)
    values = {kv.key: kv.value for kv in probe.diagnostics[-1].status[0].values}
    assert values["backend"].startswith("onnxruntime")
    for name in ("input_rate_hz", "processed_rate_hz", "dropped_frames", "latency_p50_ms", "latency_p99_ms"):
        assert name in values


def test_instances_from_a_label_topic_matched_by_stamp(graph, onnx_model):
    from icm_depth_ros.instances.messages import cloud_to_array

    start_node, probe, _ = graph
    node = start_node({"model_path": onnx_model, "backend": "onnxruntime", "instance_source": "topic",
                       "min_instance_pixels": 1, "instance_timeout_s": 1.0})
    assert node.wait_for_log("active", 60), node.log()
    assert probe.wait_for_subscriber(), node.log()
    frame = synthetic_frame(MODEL_SIZE, seed=7)
    labels = frame["instances"]
    stamp = stamp_of(3000)
    image, label_msg = make_image(stamp, frame["image"], "rgb8"), make_image(stamp, labels, "mono16")
    info = make_camera_info(stamp, MODEL_SIZE[1], MODEL_SIZE[0], frame["K"])
    assert send_until_output(probe, stamp, image, info, label_msg), node.log()
    published = cloud_to_array(probe.received["depth/instances"][(3000, 0)])
    assert sorted(published["id"]) == sorted(int(i) for i in np.unique(labels) if i)
    for row in published:
        assert row["pixel_count"] == (labels == row["id"]).sum()

    # A float label image with NaNs is refused, named, and the node keeps going.
    bad = make_image(stamp_of(3001), np.full(MODEL_SIZE, np.nan, np.float32), "32FC1")
    for _ in range(5):
        probe.label_pub.publish(bad)
        if probe.wait_for(lambda: "[label_nan]" in node.log(), 1.0):
            break
    assert "[label_nan]" in node.log() and "NaN" in node.log()


def test_lifecycle_without_autostart_waits_for_a_manager(graph, onnx_model):
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    start_node, probe, _ = graph
    node = start_node({"model_path": onnx_model, "backend": "onnxruntime", "autostart": False})
    get_state = probe.node.create_client(GetState, "/depth_node/get_state")
    change = probe.node.create_client(ChangeState, "/depth_node/change_state")
    assert probe.wait_for(lambda: get_state.service_is_ready() and change.service_is_ready(), 60), node.log()

    def call(client, request):
        future = client.call_async(request)
        assert probe.wait_for(future.done, 60)
        return future.result()

    assert call(get_state, GetState.Request()).current_state.label == "unconfigured"
    for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
        assert call(change, ChangeState.Request(transition=Transition(id=transition))).success, node.log()
    assert call(get_state, GetState.Request()).current_state.label == "active"
    stamp = stamp_of(4000)
    frame = synthetic_frame(MODEL_SIZE)
    assert send_until_output(probe, stamp, make_image(stamp, frame["image"], "rgb8")), node.log()


def test_configure_names_a_missing_model_and_exits(graph, tmp_path):
    start_node, _, _ = graph
    missing = tmp_path / "no_such_model.onnx"
    node = start_node({"model_path": missing, "backend": "onnxruntime"})
    node.process.wait(timeout=60)
    assert node.process.returncode == 1
    assert str(missing) in node.log() and "no such file" in node.log()


def test_bad_parameter_value_is_named_with_the_allowed_values(graph, onnx_model):
    start_node, _, _ = graph
    node = start_node({"model_path": onnx_model, "resize_policy": "squash"})
    node.process.wait(timeout=60)
    assert node.process.returncode == 1
    assert "resize_policy='squash'" in node.log() and "letterbox" in node.log()
