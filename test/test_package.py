"""The ament_python package: package.xml as ROS tools read it, and a real colcon build of the repository."""
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "icm_depth_ros"


def test_package_xml_is_format_3_ament_python_with_a_valid_maintainer():
    root = ElementTree.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == PACKAGE
    maintainer = root.find("maintainer")
    assert maintainer is not None and re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", maintainer.get("email", ""))
    assert root.find("export/build_type").text == "ament_python"
    exec_depends = {e.text for e in root.findall("exec_depend")}
    # Everything the node imports from ROS.
    assert {"rclpy", "sensor_msgs", "std_msgs", "visualization_msgs", "diagnostic_msgs", "lifecycle_msgs"} <= exec_depends


def test_layout_ros_users_expect():
    for path in ("setup.py", "setup.cfg", f"resource/{PACKAGE}", f"{PACKAGE}/__init__.py", "launch", "config", "training", "test"):
        assert (ROOT / path).exists(), path
    assert (ROOT / f"resource/{PACKAGE}").read_text() == ""  # the ament index marker is empty
    cfg = (ROOT / "setup.cfg").read_text()
    assert f"install_scripts=$base/lib/{PACKAGE}" in cfg and f"script_dir=$base/lib/{PACKAGE}" in cfg


@pytest.mark.slow
def test_colcon_build_installs_executables_launch_and_config(tmp_path):
    colcon = shutil.which("colcon")
    assert colcon, "colcon not on PATH: run the tests through scripts/test.sh"
    result = subprocess.run(
        [colcon, "--log-base", str(tmp_path / "log"), "build", "--paths", str(ROOT),
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "COLCON_HOME": str(tmp_path / "colcon_home")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 package finished" in result.stdout
    prefix = tmp_path / "install" / PACKAGE
    for executable in ("depth_node", "replay_eval", "replay_fleet"):
        script = prefix / "lib" / PACKAGE / executable
        assert script.is_file() and os.access(script, os.X_OK), script
        assert f"'console_scripts', '{executable}'" in script.read_text()
    entry_points = next((prefix / "lib").glob("python3*/site-packages/*.egg-info/entry_points.txt")).read_text()
    assert f"depth_node = {PACKAGE}.depth_node:main" in entry_points
    assert f"replay_eval = {PACKAGE}.replay_eval:main" in entry_points
    assert f"replay_fleet = {PACKAGE}.replay_fleet:main" in entry_points
    share = prefix / "share" / PACKAGE
    assert (share / "package.xml").is_file()
    assert (prefix / "share/ament_index/resource_index/packages" / PACKAGE).is_file()
    for source in sorted((ROOT / "launch").glob("*.py")) + sorted((ROOT / "config").glob("*.yaml")):
        assert (share / source.parent.name / source.name).is_file(), source.name
    site = next((prefix / "lib").glob("python3*/site-packages"))
    assert (site / PACKAGE / "__init__.py").is_file()
    # The compiled instance statistics kernel is built and installed, and the node's import finds it there.
    assert list((site / PACKAGE / "instances").glob("_instance_kernel.*.so")), sorted(p.name for p in (site / PACKAGE / "instances").iterdir())
    probe = subprocess.run(
        [sys.executable, "-c", f"import {PACKAGE}.instances.statistics as m; print(m._kernel.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(site)},
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(site)), probe.stdout
    # training/ is not installed: a vehicle runs the node without PyTorch.
    assert not (site / "training").exists()
    # The kernel was compiled for the Python that runs this test (3.10 / 3.12 on the vehicle stacks, .ci/).
    assert (site / PACKAGE / "instances" / f"_instance_kernel{sysconfig.get_config_var('EXT_SUFFIX')}").is_file()


def test_the_repository_cites_its_own_docs_or_primary_sources():
    """Facts are cited from the repository's docs or their primary source, never from a briefing outside it."""
    briefing = "FA" + "CTS"  # spelled apart so this file does not match itself
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    citing = [name for name in tracked if (ROOT / name).is_file() and not name.endswith((".png", ".onnx", ".pt"))
              and briefing in (ROOT / name).read_bytes().decode("utf-8", "ignore")]
    assert citing == []
