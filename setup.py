"""ament_python package: the ROS 2 node (icm_depth_ros/) plus launch and config files.

training/ is not installed with the node: a vehicle runs the node on an exported model without PyTorch.
Two compiled modules (C++17, CPython API only: no NumPy headers): the per-instance statistics kernel and the
area-shrink kernel of the model input. Where they are not built, icm_depth_ros.instances.statistics computes
the same numbers with NumPy and icm_depth_ros.processing.geometry with cv2, slower.
"""
from glob import glob

from setuptools import Extension, find_packages, setup

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
    ext_modules=[
        Extension(f"{PACKAGE}.instances._instance_kernel", [f"{PACKAGE}/instances/_instance_kernel.cpp"],
                  depends=[f"{PACKAGE}/instances/image_loop.h"], extra_compile_args=["-std=c++17", "-O3"],
                  language="c++"),
        # -ffp-contract=off: no multiply-add fused unless the source says so; the area filter matches OpenCV bit
        # for bit only with the roundings it chooses (_resize_kernel.cpp says which).
        Extension(f"{PACKAGE}.processing._resize_kernel", [f"{PACKAGE}/processing/_resize_kernel.cpp"],
                  depends=[f"{PACKAGE}/instances/image_loop.h"],
                  extra_compile_args=["-std=c++17", "-O3", "-ffp-contract=off", "-pthread"],
                  extra_link_args=["-pthread"], language="c++"),  # bands of rows on std::threads
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="icm_depth_ros maintainers",
    maintainer_email="maintainers@icm-depth-ros.dev",
    description="Monocular metric and per-instance depth (ICM network) for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            f"depth_node = {PACKAGE}.depth_node:main",
            f"replay_eval = {PACKAGE}.replay_eval:main",
            f"replay_fleet = {PACKAGE}.replay_fleet:main",
        ],
    },
)
