"""ament_python package: the ROS 2 node (icm_depth_ros/) plus launch and config files.

training/ is not installed with the node: a vehicle runs the node on an exported model without PyTorch.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "icm_depth_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="icm_depth_ros maintainers",
    maintainer_email="maintainers@icm-depth-ros.dev",
    description="Monocular metric and per-instance depth (ICM network) for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            f"depth_node = {PACKAGE}.depth_node:main",
            f"replay_eval = {PACKAGE}.replay_eval:main",
        ],
    },
)
