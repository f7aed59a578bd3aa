"""The node side (icm_depth_ros/, launch/) runs on Python 3.10: JetPack 6 and ROS 2 Humble ship 3.10.

vermin (a static minimum-version checker, pinned in requirements.txt) reads every file without
running it; ``--eval-annotations`` also counts annotations (``X | None`` needs 3.10 where evaluated).
training/ may use 3.11 (it runs on the training machines only).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODE_SIDE = ("icm_depth_ros", "launch")


def vermin(*paths: Path) -> subprocess.CompletedProcess:
    executable = shutil.which("vermin") or pytest.fail("vermin is not installed: pip install -r requirements.txt")
    command = [executable, "--target=3.10-", "--violations", "--eval-annotations", "--no-tips", "--no-parse-comments",
               *map(str, paths)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_node_side_needs_at_most_python_3_10():
    result = vermin(*(ROOT / name for name in NODE_SIDE))
    assert result.returncode == 0, f"Python > 3.10 features on the node side:\n{result.stdout}{result.stderr}"


def test_the_check_catches_a_python_3_11_feature(tmp_path):
    (tmp_path / "newer.py").write_text("import tomllib\n\ntry:\n    pass\nexcept* ValueError:\n    pass\n")
    (tmp_path / "fine.py").write_text("from __future__ import annotations\n\ndef f(x: int | None) -> str:\n    return str(x)\n")
    assert vermin(tmp_path / "fine.py").returncode == 0
    result = vermin(tmp_path / "newer.py")
    assert result.returncode != 0 and "tomllib" in result.stdout and "3.11" in result.stdout
