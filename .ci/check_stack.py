"""Before the node-side tests on a vehicle stack (.ci/node_stacks.sh): numpy, SciPy and OpenCV are the
versions the stack's file pins and import together, the node's other packages import, PyTorch is absent.

    python .ci/check_stack.py .ci/stacks/humble-py310.txt
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from pathlib import Path

SYSTEM_PACKAGES = ("numpy", "scipy", "opencv-python-headless")


def pinned_versions(stack_file: Path) -> dict[str, str]:
    pins = {}
    for line in stack_file.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def main(stack_file: Path) -> int:
    pins = pinned_versions(stack_file)
    problems = [f"{name} {importlib.metadata.version(name)} installed, {stack_file.name} pins {pins.get(name)}"
                for name in SYSTEM_PACKAGES if importlib.metadata.version(name) != pins.get(name)]
    import cv2
    import numpy
    import onnxruntime
    import rclpy  # noqa: F401
    import scipy.ndimage  # noqa: F401

    if importlib.util.find_spec("torch") is not None:
        problems.append("PyTorch is installed: the node-side tests must run without it")
    print(f"{stack_file.stem}: Python {sys.version.split()[0]}, numpy {numpy.__version__}, scipy "
          f"{importlib.metadata.version('scipy')}, OpenCV {cv2.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"no PyTorch" if not problems else f"{stack_file.stem}: " + "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
