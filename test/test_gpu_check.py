"""scripts/gpu_check.sh where there is no GPU: it runs up to the GPU, says so in one line, exits 3, and
installs nothing (no pip, no setup script: the GPU machines it is meant for have no package index)."""
import importlib.util
import os
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from training.config import load_config

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


def load_torch_check():
    spec = importlib.util.spec_from_file_location("gpu_check_torch", ROOT / "scripts" / "gpu_check_torch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_pytorch_figures_of_the_demo_network_on_the_cpu():
    """The code the GPU runs, run here on the CPU (CPU autocast, no memory figures): every figure is there
    and plausible."""
    check = load_torch_check()
    config = load_config(check.NETWORKS["demo (MobileNetV3)"])
    figures = check.network_figures("demo (MobileNetV3)", config, frames=2, steps=1, device=torch.device("cpu"))
    assert figures["size"] == "96x320" and figures["encoder"] == config.model.encoder
    for precision in ("fp16", "bf16"):  # reduced precision changes the depth, but not by orders of magnitude
        largest, mean = figures[f"{precision}_vs_fp32_max_rel_depth"], figures[f"{precision}_vs_fp32_mean_rel_depth"]
        assert 0 <= mean <= largest * (1 + 1e-6) and largest < 1  # (a mean of equal values may round up)
    assert figures["bf16_vs_fp32_max_rel_depth"] > 0  # CPU autocast runs the convolutions in bf16
    assert figures["batch1_ms_fp32"] > 0 and figures["batch1_ms_amp"] > 0
    assert figures["train_batch"] == 8 and figures["train_images_per_s"] > 0 and figures["train_skipped_steps"] == 0
    assert figures["inference_peak_memory_gib"] is None and figures["train_peak_memory_gib"] is None
