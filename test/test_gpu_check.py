"""scripts/gpu_check.sh where there is no GPU: it runs up to the GPU, says so in one line, exits 3, and
installs nothing (no pip, no setup script: the GPU machines it is meant for have no package index)."""
import os
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
INSTALLERS = ("pip", "pip3", "uv", "conda", "apt-get", "bash")  # bash: a setup script run as `bash ...sh`


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU: the check would run on it")
def test_without_a_gpu_the_check_stops_at_the_gpu_with_exit_code_3_and_installs_nothing(tmp_path):
    spies = tmp_path / "bin"
    spies.mkdir()
    calls = tmp_path / "calls.txt"
    for name in INSTALLERS:  # each records that it was called, then fails
        spy = spies / name
        spy.write_text(f"#!/bin/sh\necho \"{name} $*\" >> {calls}\nexit 99\n")
        spy.chmod(spy.stat().st_mode | stat.S_IEXEC)
    site_packages = Path(sysconfig.get_paths()["purelib"])
    installed_before = sorted(path.name for path in site_packages.iterdir())
    out = tmp_path / "gpu_check"
    env = {**os.environ, "PATH": f"{spies}:{Path(sys.executable).parent}:/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""}
    finished = subprocess.run(["/bin/bash", str(ROOT / "scripts" / "gpu_check.sh"), "--out", str(out)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 3, finished.stdout + finished.stderr
    no_gpu = [line for line in finished.stdout.splitlines() if line.startswith("gpu_check: no CUDA GPU")]
    assert no_gpu == [f"gpu_check: no CUDA GPU (torch {torch.__version__}: torch.cuda.is_available() is False); "
                      "everything before the GPU checks ran; stopping with exit code 3"]
    assert f"gpu_check: Python {sys.version.split()[0]}" in finished.stdout  # it found this environment's Python
    assert not calls.exists(), calls.read_text()
    assert sorted(path.name for path in site_packages.iterdir()) == installed_before
    assert (out / "steps.tsv").read_text() == "pytorch cuda\tno gpu\ttorch.cuda.is_available() is False\n"
    assert "| pytorch cuda | no gpu |" in (out / "summary.md").read_text()
    assert not (out / "pytorch.json").exists()


def test_the_check_refuses_unknown_arguments():
    finished = subprocess.run(["/bin/bash", str(ROOT / "scripts" / "gpu_check.sh"), "--frames", "3"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2 and "usage: bash scripts/gpu_check.sh [--out DIR] (got: --frames 3)" in finished.stderr
