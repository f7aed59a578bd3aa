"""config/depth.yaml, launch/depth.launch.py and the README tables agree with the node's parameter table;
the node runtime imports neither PyTorch nor training/; the package installs and runs from colcon's tree."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from icm_depth_ros.node.node_parameters import LIVE_PARAMETERS, PARAMETERS, STARTUP_PARAMETERS

ROOT = Path(__file__).resolve().parents[3]


def load_launch_module():
    spec = importlib.util.spec_from_file_location("depth_launch", ROOT / "launch" / "depth.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports nothing from launch at module level
    return module


def test_params_file_holds_every_parameter_with_its_default():
    parameters = yaml.safe_load((ROOT / "config" / "depth.yaml").read_text())["/**"]["ros__parameters"]
    assert set(parameters) == set(PARAMETERS)
    for name, (default, _, _) in PARAMETERS.items():
        assert parameters[name] == default and type(parameters[name]) is type(default), name
    assert "model_path" in parameters and "backend" in parameters


def test_readme_table_lists_every_parameter_and_topic():
    text = (ROOT / "README.md").read_text()
    for name in PARAMETERS:
        assert f"| `{name}` |" in text, name
    for topic in ("image", "image/compressed", "camera_info", "instances", "depth/image", "depth/camera_info",
                  "depth/instances", "depth/colorized", "depth/instance_markers", "/diagnostics"):
        assert f"`{topic}`" in text, topic


def test_launch_file_refers_to_what_the_package_installs():
    launch = load_launch_module()
    assert launch.PACKAGE == "icm_depth_ros" and launch.EXECUTABLE == "depth_node"
    assert (ROOT / launch.PARAMS_FILE).is_file() and (ROOT / launch.FASTDDS_PROFILE).is_file()
    assert "depth_node = icm_depth_ros.depth_node:main" in (ROOT / "setup.py").read_text().replace('f"', "").replace(
        "{PACKAGE}", "icm_depth_ros")
    assert set(launch.OVERRIDABLE_PARAMETERS) <= set(PARAMETERS)
    specs = launch.node_settings("front, left,/right", "image_raw", "camera_info", process_per_camera=True)
    assert [s["namespace"] for s in specs] == ["front", "left", "right"]
    assert specs[0]["remappings"] == [("image", "image_raw")] and specs[0]["parameters"] == {}
    assert launch.node_settings("", "image", "camera_info") == [{"namespace": "", "remappings": [], "parameters": {}}]
    (one,) = launch.node_settings("front, left,/right", "image_raw", "camera_info")  # default: one node for all
    assert one["namespace"] == "" and one["parameters"] == {"cameras": ["front", "left", "right"]}
    assert one["remappings"] == [("front/image", "front/image_raw"), ("left/image", "left/image_raw"),
                                 ("right/image", "right/image_raw")]
    assert "cameras" in PARAMETERS and PARAMETERS["cameras"][0] == [""]
    assert launch.parameter_overrides({"model_path": "/m.onnx", "backend": ""}) == {"model_path": "/m.onnx"}


def test_fastdds_profile_has_a_16_mb_shared_memory_segment_and_udp_for_other_hosts():
    import xml.etree.ElementTree as ElementTree

    from icm_depth_ros.node.transport import package_profile

    assert package_profile() == ROOT / "config" / "fastdds_shm_udp.xml"
    root = ElementTree.parse(package_profile()).getroot()
    ns = {"d": "http://www.eprosima.com"}
    kinds = {d.find("d:transport_id", ns).text: d for d in root.findall(".//d:transport_descriptor", ns)}
    used = [t.text for t in root.findall(".//d:participant/d:rtps/d:userTransports/d:transport_id", ns)]
    assert sorted(kinds[name].find("d:type", ns).text for name in used) == ["SHM", "UDPv4"]
    shm = next(kinds[name] for name in used if kinds[name].find("d:type", ns).text == "SHM")
    assert int(shm.find("d:segment_size", ns).text) == 16 * 1024 * 1024
    assert root.find(".//d:participant", ns).get("is_default_profile") == "true"
    assert root.find(".//d:useBuiltinTransports", ns).text == "false"  # replaced by the two above, not added to


def test_launch_arguments_are_described_and_a_missing_params_file_stops_the_launch(tmp_path):
    launch = load_launch_module()
    assert set(launch.ARGUMENTS) == {"params_file", "model_path", "backend", "cameras", "process_per_camera",
                                     "image_topic", "camera_info_topic", "shm_transport"}
    assert all(len(description) > 20 for _, description in launch.ARGUMENTS.values())
    params = tmp_path / "mine.yaml"
    params.write_text("/**:\n  ros__parameters: {}\n")
    assert launch.checked_params_file(str(params)) == str(params)
    with pytest.raises(FileNotFoundError, match="params_file:=.*missing.yaml does not exist"):
        launch.checked_params_file(str(tmp_path / "missing.yaml"))
    assert launch.node_environment("true") == {}
    assert launch.node_environment("false") == {"ICM_DEPTH_ROS_FASTDDS_PROFILE": "off"}
    code = "\n".join(line for line in (ROOT / "launch" / "depth.launch.py").read_text().splitlines()
                     if not line.lstrip().startswith("#"))
    assert "SetEnvironmentVariable" not in code  # a user's FASTDDS_DEFAULT_PROFILES_FILE stays as it is


def test_readme_parameter_table_says_which_parameters_apply_live():
    rows = [line.split("|") for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `")]
    applied = {cells[1].strip().strip("`"): cells[4].strip() for cells in rows if cells[1].strip().strip("`") in PARAMETERS}
    assert set(applied) == set(PARAMETERS)
    for name, when in applied.items():
        expected = "live" if name in LIVE_PARAMETERS else "start-up" if name in STARTUP_PARAMETERS else "configure"
        assert when == expected, (name, when)


def readme_cell(value) -> str:
    """How the README's default column writes a parameter's default."""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (list, tuple)):
        return "`[" + ", ".join(readme_cell(item).strip("`") for item in value) + "]`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value}`"


def test_readme_parameter_table_has_each_parameters_type_and_default():
    """Not only the names: the type and default columns are the code's (a changed default fails here)."""
    readme_types = {bool: "bool", int: "int", float: "double", str: "string", list: "string[]"}
    rows = [line.split("|") for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `")]
    table = {cells[1].strip().strip("`"): (cells[2].strip(), cells[3].strip()) for cells in rows
             if cells[1].strip().strip("`") in PARAMETERS}
    assert set(table) == set(PARAMETERS)
    for name, (default, _, _) in PARAMETERS.items():
        assert table[name] == (readme_types[type(default)], readme_cell(default)), name


def test_launch_description_where_launch_is_installed():
    pytest.importorskip("launch_ros", reason="launch/launch_ros are not pip-installable here (not on the package index; docs/node.md)")
    description = load_launch_module().generate_launch_description()
    assert description.entities


def test_node_runtime_imports_no_torch_and_nothing_from_training():
    modules = ["depth_node", "processing.pipeline", "inference", "inference.tensorrt_backend", "inference.engine_builder",
               "processing.geometry", "instances.statistics", "instances.messages", "processing.image_conversion",
               "node.input_checks", "node.frame_flow", "node.node_parameters"]
    code = (f"import sys\nfor m in {modules}: __import__('icm_depth_ros.' + m)\n"
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'training')))\n"
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.ros
def test_installed_depth_node_runs_from_the_colcon_install_tree(tmp_path, graph, onnx_model):
    """colcon build, then the installed console script (not the source tree) configures and publishes."""
    colcon = shutil.which("colcon")
    assert colcon, "colcon not on PATH: run the tests through scripts/test.sh"
    build = subprocess.run(
        [colcon, "--log-base", str(tmp_path / "log"), "build", "--paths", str(ROOT), "--build-base",
         str(tmp_path / "build"), "--install-base", str(tmp_path / "install")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "COLCON_HOME": str(tmp_path / "ch")})
    assert build.returncode == 0, build.stdout + build.stderr
    prefix = tmp_path / "install" / "icm_depth_ros"
    executable = prefix / "lib" / "icm_depth_ros" / "depth_node"
    site = next((prefix / "lib").glob("python3*/site-packages"))
    assert (prefix / "share" / "icm_depth_ros" / "config" / "fastdds_shm_udp.xml").is_file()
    start_node, probe, domain_id = graph
    from conftest import MODEL_SIZE, make_image, ros_environment, stamp_of

    env = ros_environment(domain_id)
    env["PYTHONPATH"] = str(site)  # the installed package only, not the repository
    env["AMENT_PREFIX_PATH"] = f"{prefix}:{env.get('VIRTUAL_ENV', '')}"
    params = prefix / "share" / "icm_depth_ros" / "config" / "depth.yaml"
    node = start_node({"model_path": onnx_model, "backend": "onnxruntime"},
                      command=[sys.executable, str(executable), "--ros-args", "--params-file", str(params)], node_env=env)
    assert node.wait_for_log("active", 60), node.log()
    assert probe.wait_for_subscriber(), node.log()
    import numpy as np

    for second in range(1, 20):
        probe.image_pub.publish(make_image(stamp_of(second), np.zeros((*MODEL_SIZE, 3), np.uint8), "rgb8"))
        if probe.wait_for(lambda: probe.received["depth/image"], 1.5):
            break
    assert probe.received["depth/image"], node.log()
    check = subprocess.run([sys.executable, "-c", "import icm_depth_ros; print(icm_depth_ros.__file__)"],
                           env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert str(site) in check.stdout, check.stdout + check.stderr
