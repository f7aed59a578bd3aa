"""The two pixel formats of the model contract give the same published values (issue 21).

A model that takes the camera's uint8 pixels and reduces the membership in its graph (rgb_uint8_nhwc, what
training/export.py writes now) must publish what the node published before with the same network in the
older form (rgb_float32_nchw_0_1: float input prepared on the host, membership reduced on the host). The
demo model ships in the new form; conftest.with_float_input gives the same network in the old one.
"""
from pathlib import Path

import cv2
import numpy as np
import pytest

from icm_depth_ros.inference import contract, graph_upgrade, open_backend
from icm_depth_ros.inference.contract import ModelLoadError
from icm_depth_ros.instances.messages import instances_to_cloud
from icm_depth_ros.processing.pipeline import DepthPipeline, FrameInput, PipelineConfig
from training.data.synthetic import render_scene

REAL_KITTI = Path(__file__).resolve().parents[4] / "shared" / "real-samples" / "kitti" / "metric3d_kitti_demo" / "rgb"


class Header:  # instances_to_cloud copies it onto the cloud; plain attributes are enough here
    frame_id = "camera"


def frames(size=(375, 1242)):
    """Fixed inputs: three rendered road scenes and, where present, the real KITTI frames."""
    out = [(scene["image"], scene["K"]) for scene in (render_scene(seed, size) for seed in range(3))]
    for path in sorted(REAL_KITTI.glob("*.png")) if REAL_KITTI.is_dir() else []:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        out.append((rgb, out[0][1]))
    return out


def pipelines(new_model, old_model, **options):
    configs = [PipelineConfig(model_path=str(path), backend="onnxruntime", threads=1, **options)
               for path in (new_model, old_model)]
    return [DepthPipeline.from_config(config) for config in configs]


def assert_same_results(a, b):
    np.testing.assert_array_equal(a.depth, b.depth)  # NaN where the other has NaN
    np.testing.assert_array_equal(a.K, b.K)
    assert a.instances == b.instances
    assert bytes(instances_to_cloud(a.instances, Header()).data) == bytes(instances_to_cloud(b.instances, Header()).data)


@pytest.mark.parametrize("policy,resolution", [("crop", "input"), ("resize", "model"), ("letterbox", "input")])
def test_new_and_old_pixel_format_publish_the_same_values(onnx_model, float_input_model, policy, resolution):
    new, old = pipelines(onnx_model, float_input_model, resize_policy=policy, output_resolution=resolution)
    assert new.backend.info.pixel_format == contract.PIXEL_FORMAT_UINT8
    assert old.backend.info.pixel_format == contract.PIXEL_FORMAT_FLOAT32
    instances = 0
    for rgb, K in frames():
        a, b = new.process(rgb, K), old.process(rgb, K)
        assert_same_results(a, b)
        instances += len(a.instances)
    assert instances > 10  # the comparison covered instances, not only empty lists


def test_topic_instances_and_batches_are_the_same_in_both_formats(onnx_model, float_input_model):
    """instance_source topic takes the firmness alone; a batch of several cameras goes through one input buffer."""
    new, old = pipelines(onnx_model, float_input_model)
    rgb, K = frames()[0]
    labels = np.zeros(rgb.shape[:2], np.int32)
    labels[150:300, 200:500], labels[180:320, 700:900] = 1003, 2001
    a = new.process(rgb, K, instance_labels=labels, instance_source="topic")
    b = old.process(rgb, K, instance_labels=labels, instance_source="topic")
    assert_same_results(a, b)
    assert {i.id for i in a.instances} == {1003, 2001}
    assert all(0 < i.confidence <= 1 for i in a.instances)


def test_the_graph_input_is_the_pixels_and_the_outputs_two_small_maps(onnx_model, float_input_model):
    new = open_backend("onnxruntime", str(onnx_model))
    old = open_backend("onnxruntime", str(float_input_model))
    pixels = np.random.default_rng(0).integers(0, 256, (1, 96, 320, 3), dtype=np.uint8)
    depth, cluster, firmness = new.infer(contract.model_input(new.info, pixels))
    assert depth.dtype == np.float32 and depth.shape == (1, 1, 96, 320)
    assert cluster.dtype == np.int32 and cluster.shape == (1, 24, 80) and 0 <= cluster.min() <= cluster.max() < 32
    assert firmness.dtype == np.float32 and firmness.shape == (1, 24, 80)
    assert np.all(firmness >= 1.0 / 32 - 1e-6) and np.all(firmness <= 1.0)  # the largest of 32 softmax shares
    old_input = contract.model_input(old.info, pixels)
    assert old_input.dtype == np.float32 and old_input.shape == (1, 3, 96, 320)
    np.testing.assert_array_equal(old_input[0, :, 5, 7], pixels[0, 5, 7] * np.float32(1 / 255))
    for got, want in zip(old.infer(old_input), (depth, cluster, firmness)):
        np.testing.assert_array_equal(got, want)


def test_model_input_refuses_what_is_not_the_pixels(onnx_model):
    info = open_backend("onnxruntime", str(onnx_model)).info
    with pytest.raises(ValueError, match=r"uint8 \[B, 96, 320, 3\] RGB pixels, got float32 \[1, 96, 320, 3\]"):
        contract.model_input(info, np.zeros((1, 96, 320, 3), np.float32))
    with pytest.raises(ValueError, match=r"got uint8 \[96, 320, 3\]"):
        contract.model_input(info, np.zeros((96, 320, 3), np.uint8))


def test_a_model_of_unknown_pixel_format_or_outputs_is_refused():
    metadata = contract.ModelInfo(8, 8, "bgr_uint8", 1.0, 80.0, 4, 4, "c", "none", "0").to_metadata()
    with pytest.raises(ValueError, match="pixel format 'bgr_uint8'; this runner takes rgb_uint8_nhwc or rgb_float32"):
        contract.ModelInfo.from_metadata(metadata, "m.onnx")
    info = contract.ModelInfo(8, 8, contract.PIXEL_FORMAT_UINT8, 1.0, 80.0, 4, 4, "c", "none", "0")
    with pytest.raises(ModelLoadError, match="pixel format 'rgb_uint8_nhwc' needs input 'image' and outputs 'depth', "
                                             "'cluster', 'firmness'"):
        contract.check_io_names(["image"], ["depth", "membership"], "m.onnx", info)


def test_graph_upgrade_turns_an_old_export_into_the_shipped_form(onnx_model, float_input_model, tmp_path, capsys):
    upgraded = tmp_path / "upgraded.onnx"
    assert graph_upgrade.main([str(float_input_model), "--out", str(upgraded)]) == 0
    assert "taking uint8 [B, H, W, 3] pixels" in capsys.readouterr().out
    new, again = (open_backend("onnxruntime", str(path)) for path in (onnx_model, upgraded))
    assert again.info == new.info and again.metadata == new.metadata  # the self-test reference kept
    pixels = np.stack([frame[:96, :320] for frame, _ in frames()[:2]])[:1]
    for got, want in zip(again.infer(pixels), new.infer(pixels)):
        np.testing.assert_array_equal(got, want)


def test_graph_upgrade_refuses_what_it_cannot_upgrade(onnx_model, float_input_model, tmp_path, capsys):
    assert graph_upgrade.main([str(onnx_model), "--out", str(tmp_path / "x.onnx")]) == 2
    assert f"{onnx_model}: pixel format is already 'rgb_uint8_nhwc'; nothing to upgrade" in capsys.readouterr().err
    assert graph_upgrade.main([str(float_input_model), "--out", str(float_input_model)]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert graph_upgrade.main([str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "missing.onnx' not found" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_a_batch_of_cameras_fills_one_pixel_buffer(dynamic_batch_model):
    pipeline = DepthPipeline.from_config(PipelineConfig(model_path=str(dynamic_batch_model), backend="onnxruntime"))
    inputs = [FrameInput(rgb, K) for rgb, K in frames()[:3]]
    batch, geometries, _ = pipeline.prepare(inputs)
    assert batch.dtype == np.uint8 and batch.shape == (3, 96, 320, 3)
    for index, item in enumerate(inputs):
        np.testing.assert_array_equal(batch[index], geometries[index].to_model(item.rgb))
    together = pipeline.process_batch(inputs)
    for item, result in zip(inputs, together):  # a batched convolution sums in another order: float tolerance
        alone = pipeline.process(item.rgb, item.K)
        np.testing.assert_allclose(result.depth, alone.depth, rtol=1e-4)
        assert [i.bbox for i in result.instances] == [i.bbox for i in alone.instances]
