"""DepthPipeline, geometry and instance statistics without ROS: values, not only shapes."""
import numpy as np
import pytest

from icm_depth_ros.processing.geometry import InputGeometry
from icm_depth_ros.instances.statistics import cluster_regions, instance_statistics
from icm_depth_ros.processing.pipeline import DepthPipeline, PipelineConfig

K = np.array([[500.0, 0.0, 620.0], [0.0, 500.0, 187.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("policy", ["resize", "crop", "letterbox"])
def test_scaled_intrinsics_project_points_where_the_image_moved_them(policy):
    geometry = InputGeometry.build((375, 1242), (96, 320), policy)
    K_model = geometry.scale_intrinsics(K)
    points = np.array([[1.0, 0.5, 10.0], [-3.0, -1.0, 20.0], [0.0, 0.0, 5.0]])
    camera_px = (K @ points.T).T
    camera_px = camera_px[:, :2] / camera_px[:, 2:]
    model_px = (K_model @ points.T).T
    model_px = model_px[:, :2] / model_px[:, 2:]
    affine = geometry.camera_to_model_affine()
    np.testing.assert_allclose(camera_px @ affine[:, :2].T + affine[:, 2], model_px, atol=1e-9)


@pytest.mark.parametrize("policy", ["resize", "crop", "letterbox"])
def test_model_image_and_back_keep_a_smooth_ramp(policy):
    """A horizontal ramp sent to the model grid and back comes out where it came from (NaN outside a crop)."""
    geometry = InputGeometry.build((120, 400), (96, 320), policy)
    ramp = np.tile(np.linspace(0, 255, 400, dtype=np.float32), (120, 1))
    model = geometry.to_model(np.repeat(ramp[:, :, None], 3, axis=2))[:, :, 0]
    assert model.shape == (96, 320)
    back = geometry.to_camera(model)
    valid = np.isfinite(back)
    assert valid.mean() > (0.75 if policy == "crop" else 0.99)
    np.testing.assert_allclose(back[valid], ramp[valid], atol=1.5)


def test_maps_keep_their_type_on_the_camera_grid():
    """NaN outside a crop keeps a float32 depth float32 (no float64 copy per frame), and a label map keeps
    its integer type with 0 outside."""
    geometry = InputGeometry.build((375, 1242), (96, 96), "crop")  # most columns are cut off
    depth = geometry.to_camera(np.full((96, 96), 7.0, np.float32))
    assert depth.dtype == np.float32 and np.isnan(depth).any() and np.nanmax(depth) == 7.0
    labels = geometry.to_camera(np.full((24, 24), 3, np.uint16), nearest=True, fill=np.uint16(0))
    assert labels.dtype == np.uint16 and set(np.unique(labels)) == {0, 3}


def test_instance_statistics_values():
    depth = np.full((40, 60), 20.0, np.float32)
    labels = np.zeros((40, 60), np.int32)
    labels[10:20, 5:15] = 7  # a 10x10 box
    depth[10:20, 5:15] = np.linspace(5, 14, 10)[None, :]  # columns at 5..14 m
    depth[10, 5] = np.nan
    labels[30:35, 40:50] = 3 * 1000 + 2  # panoptic: class 3, instance 2
    (small,) = instance_statistics(depth, np.where(labels == 7, 7, 0), None)
    assert small.bbox == (5, 10, 15, 20) and small.pixel_count == 100 and small.class_id == -1
    values = depth[10:20, 5:15][np.isfinite(depth[10:20, 5:15])]
    assert small.median_depth == pytest.approx(np.median(values))
    assert small.near_depth == pytest.approx(np.percentile(values, 10))
    assert small.confidence == pytest.approx(0.99)
    K_small = np.array([[100.0, 0, 30], [0, 100.0, 20], [0, 0, 1]])
    found = instance_statistics(depth, labels, K_small, class_divisor=1000)
    assert [i.id for i in found] == [7, 3002] and found[1].class_id == 3
    # centroid: mean of back-projected pixels, checked point by point
    v, u = np.nonzero(labels == 3002)
    z = depth[v, u]
    expected = ((u - 30) * z / 100).mean(), ((v - 20) * z / 100).mean(), z.mean()
    np.testing.assert_allclose(found[1].centroid, expected)


def test_cluster_regions_split_one_cluster_into_connected_parts():
    membership = np.zeros((3, 8, 12), np.float32)
    membership[0] = 1.0
    membership[0, 1:3, 1:3] = membership[0, 5:8, 8:12] = 0.0
    membership[1, 1:3, 1:3] = 0.9  # cluster 1: two separate blobs
    membership[1, 5:8, 8:12] = 0.8
    regions, firmness = cluster_regions(membership, min_pixels=1)
    assert np.unique(regions).tolist() == [1, 2, 3]  # cluster 0 + the two separate blobs of cluster 1
    assert regions[0, 0] == 1  # ids from the largest region down
    assert regions[1, 1] != regions[6, 9] and firmness[6, 9] == pytest.approx(0.8)
    regions, _ = cluster_regions(membership, min_pixels=5, max_regions=2)
    assert set(np.unique(regions)) == {0, 1, 2} and regions[1, 1] == 0


def test_pipeline_on_the_exported_model(onnx_model):
    pipeline = DepthPipeline.from_config(PipelineConfig(model_path=str(onnx_model), backend="onnxruntime"))
    rgb = np.random.default_rng(0).integers(0, 255, (375, 1242, 3), dtype=np.uint8)
    result = pipeline.process(rgb, K)
    assert result.depth.shape == (375, 1242) and result.depth.dtype == np.float32
    finite = result.depth[np.isfinite(result.depth)]
    assert finite.min() >= 1e-3 and finite.max() <= 80.0
    assert 0 < np.isnan(result.depth).mean() < 0.2  # the crop trims the top and bottom rows only
    np.testing.assert_array_equal(result.K, K)
    assert set(result.timings) == {"preprocess", "inference", "postprocess", "instances"}
    assert 0 < len(result.instances) <= 64
    for instance in result.instances:
        u0, v0, u1, v1 = instance.bbox
        assert 0 <= u0 < u1 <= 1242 and 0 <= v0 < v1 <= 375 and instance.pixel_count >= 50


def test_pipeline_config_errors_name_the_parameter(onnx_model, tmp_path):
    with pytest.raises(ValueError, match="resize_policy='squash'"):
        DepthPipeline.from_config(PipelineConfig(model_path=str(onnx_model), resize_policy="squash"))
    with pytest.raises(ValueError, match="input_height=128 but model"):
        DepthPipeline.from_config(PipelineConfig(model_path=str(onnx_model), backend="onnxruntime", input_height=128))


def test_a_batch_gives_each_frame_what_it_gets_alone(dynamic_batch_model, onnx_model):
    """process_batch on three cameras' frames (different sizes, K, sources) == process on each; static models take 1."""
    from training.data.synthetic import render_scene

    from icm_depth_ros.processing.pipeline import FrameInput

    pipeline = DepthPipeline.from_config(PipelineConfig(model_path=str(dynamic_batch_model), backend="onnxruntime"))
    assert pipeline.max_batch > 1
    scenes = [render_scene(seed, size) for seed, size in ((21, (375, 1242)), (22, (96, 320)), (23, (200, 600)))]
    frames = [FrameInput(scene["image"], scene["K"]) for scene in scenes]
    batch = pipeline.process_batch(frames)
    assert len(batch) == 3
    for frame, result in zip(frames, batch):
        alone = pipeline.process(frame.rgb, frame.K)
        np.testing.assert_allclose(result.depth, alone.depth, rtol=1e-4, atol=1e-5, equal_nan=True)
        np.testing.assert_array_equal(result.K, alone.K)
        assert [i.id for i in result.instances] == [i.id for i in alone.instances] and alone.instances
        # batched convolutions round differently (depth agrees to 1e-4); a median may then be the neighbouring pixel
        np.testing.assert_allclose([i.median_depth for i in result.instances],
                                   [i.median_depth for i in alone.instances], rtol=3e-3)
    labels = scenes[1]["instances"]
    topic = pipeline.process_batch([frames[0], FrameInput(scenes[1]["image"], scenes[1]["K"], labels)], "topic")
    assert topic[0].instances == []  # topic source without a label image: depth only
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    assert [i.id for i in topic[1].instances] == ids[counts >= 50].tolist()  # min_instance_pixels 50
    static = DepthPipeline.from_config(PipelineConfig(model_path=str(onnx_model), backend="onnxruntime"))
    assert static.max_batch == 1
    with pytest.raises(ValueError, match="2 frames in one batch; this model takes 1 to 1"):
        static.process_batch(frames[:2])
