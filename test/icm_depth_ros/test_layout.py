"""The layout of icm_depth_ros/: which packages there are, and the one direction their imports run.

Each package's docstring lists its modules; a module imports only those listed above it. Between packages:
inference/ and instances/ import no other package of icm_depth_ros, processing/ imports those two, node/ and
replay/ import the three below and not each other, and only the entry modules import node/ or replay/.
"""
import ast
import importlib
from pathlib import Path

import pytest

import icm_depth_ros

PACKAGE_ROOT = Path(icm_depth_ros.__file__).resolve().parent
# package -> the packages of icm_depth_ros it may import
ALLOWED = {
    "inference": set(),
    "instances": set(),
    "processing": {"inference", "instances"},
    "node": {"processing", "instances", "inference"},
    "replay": {"processing", "instances", "inference"},
}
ENTRY_MODULES = {"depth_node", "replay_eval", "replay_fleet"}
ALIAS_MODULES = {"instance_message"}  # kept where the README pointed users: re-exports instances/messages.py
# Modules that must not know ROS at all: no rclpy, no message package.
ROS_FREE = {"inference", "processing", "instances.statistics", "instances.kinematics", "instances.tracking",
            "replay.track_truth", "replay.track_scoring",
            "node.frame_flow", "node.frame_scheduler", "node.node_parameters", "node.local_graph"}


def imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports (absolute names), wherever the import statement stands."""
    modules = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            modules.append(node.module)
            modules += [f"{node.module}.{alias.name}" for alias in node.names]  # `from pkg import module`
    return modules


def own_modules(path: Path) -> set[tuple[str, ...]]:
    """The icm_depth_ros modules ``path`` imports, as name parts after ``icm_depth_ros``."""
    parts = set()
    for name in imported_modules(path):
        if name.startswith("icm_depth_ros."):
            tail = tuple(name.split(".")[1:])
            if (PACKAGE_ROOT.joinpath(*tail).with_suffix(".py").is_file() or PACKAGE_ROOT.joinpath(*tail).is_dir()
                    or PACKAGE_ROOT.joinpath(*tail[:-1]).with_suffix(".py").is_file()):
                parts.add(tail)
    return parts


def listed_modules(package: str) -> list[str]:
    """The module names a package's docstring lists, in order (lines ``    name.py  what it holds``)."""
    doc = importlib.import_module(f"icm_depth_ros.{package}").__doc__
    return [line.split()[0].rsplit(".", 1)[0] for line in doc.splitlines()
            if line.startswith("    ") and line.split()[0].endswith((".py", ".cpp"))]


def test_the_top_holds_the_packages_the_entry_modules_and_the_alias():
    packages = {p.name for p in PACKAGE_ROOT.iterdir() if (p / "__init__.py").is_file()}
    modules = {p.stem for p in PACKAGE_ROOT.glob("*.py")} - {"__init__"}
    assert packages == set(ALLOWED)
    assert modules == ENTRY_MODULES | ALIAS_MODULES
    assert not list(PACKAGE_ROOT.glob("*.cpp")), "compiled sources belong to the package that uses them"
    listed = [line.split()[0].rstrip("/").rsplit(".", 1)[0] for line in icm_depth_ros.__doc__.splitlines()
              if line.startswith("    ")]
    assert set(listed) == packages | modules


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_the_docstring_lists_every_module_and_imports_run_up_the_list(package):
    folder = PACKAGE_ROOT / package
    order = listed_modules(package)
    present = {p.stem for p in folder.glob("*.py")} - {"__init__"} | {p.stem for p in folder.glob("*.cpp")}
    assert sorted(order) == sorted(present), f"{package}/__init__.py lists {order}"
    for index, module in enumerate(order):
        source = folder / f"{module}.py"
        if not source.is_file():
            continue  # the compiled kernel
        inside = {tail[1] for tail in own_modules(source) if len(tail) >= 2 and tail[0] == package and tail[1] in order}
        assert inside <= set(order[:index]), f"{package}/{module}.py imports {sorted(inside - set(order[:index]))} from below it"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_between_packages_run_one_way(package):
    for source in sorted((PACKAGE_ROOT / package).glob("*.py")):
        others = {tail[0] for tail in own_modules(source)} - {package}
        assert others <= ALLOWED[package], f"{package}/{source.name} imports {sorted(others - ALLOWED[package])}"
        assert not others & (ENTRY_MODULES | ALIAS_MODULES), f"{package}/{source.name} imports an entry module"


@pytest.mark.parametrize("name", sorted(ROS_FREE))
def test_ros_free_parts_import_no_ros(name):
    path = PACKAGE_ROOT.joinpath(*name.split("."))
    sources = sorted(path.glob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    for source in sources:
        ros = [m for m in imported_modules(source) if m.split(".")[0] in ("rclpy", "rcl_interfaces")
               or m.split(".")[0].endswith("_msgs")]
        assert not ros, f"{source.relative_to(PACKAGE_ROOT)} imports {ros}"


def test_the_checks_see_a_wrong_import(tmp_path):
    """The checks above read real import statements: a processing module importing node/ would be caught."""
    source = tmp_path / "bad.py"
    source.write_text("import numpy\nfrom icm_depth_ros.node.transport import output_qos\n"
                      "def f():\n    from icm_depth_ros.instances import statistics\n    import rclpy\n")
    assert own_modules(source) == {("node", "transport"), ("node", "transport", "output_qos"),
                                   ("instances",), ("instances", "statistics")}
    assert {tail[0] for tail in own_modules(source)} - ALLOWED["processing"] == {"node"}
    assert "rclpy" in imported_modules(source)


def test_users_old_import_of_cloud_to_array_still_works():
    from icm_depth_ros.instance_message import cloud_to_array
    from icm_depth_ros.instances.messages import cloud_to_array as moved

    assert cloud_to_array is moved
