"""Fetch the real TensorRT / cuda-bindings wheels from the package index and make them importable here.

``tensorrt-cu12-bindings`` (module ``tensorrt_bindings``, ~1.3 MB) holds only ``tensorrt.so``, which
links against ``libnvinfer.so.N``, ``libnvonnxparser.so.N`` and ``libnvinfer_plugin.so.N``. Of those
it needs only the few factory symbols ``nm -D --undefined-only`` lists (createInferBuilder_INTERNAL,
...). Stub libraries defining them (returning NULL), compiled with the machine's gcc, make the module
import and expose that version's exact API; nothing in it can run. Each version goes into its own
folder under the cache (``ICM_BINDINGS_CACHE``, default .venv/tensorrt-test-bindings), installed
with ``pip install --no-deps --target`` by the setup step (``python test/tensorrt_double/setup_bindings.py``,
which scripts/setup_env.sh runs); tests only read the cache and never download. One process can load
only one tensorrt.so, so every version is imported in a subprocess of its own (``environment``).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

TENSORRT_VERSIONS = ("10.3.0", "10.13.3.9", "11.4.0.106")  # JetPack 6, JetPack 7.0/7.1, pip / DRIVE Thor
CUDA_BINDINGS_VERSIONS = ("12.9.6", "13.5.0")  # the CUDA 12 line (JetPack 6, Python 3.10) and the CUDA 13 line
TEST_ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = TEST_ROOT.parent
CACHE = Path(os.environ.get("ICM_BINDINGS_CACHE", REPOSITORY / ".venv" / "tensorrt-test-bindings"))
# The oldest Python each release has wheels for, where that is above 3.10: cuda-python 13.x left 3.10 behind
# (a JetPack 6 vehicle, Python 3.10, uses the 12.x line).
PYTHON_FLOOR = {("cuda-bindings", "13.5.0"): (3, 11)}


def missing_wheel(package: str, version: str) -> str | None:
    """Why ``package==version`` cannot be installed on this Python, or None where it can."""
    floor = PYTHON_FLOOR.get((package, version))
    if floor is not None and sys.version_info[:2] < floor:
        return (f"{package}=={version} has no wheel for Python {sys.version_info[0]}.{sys.version_info[1]} "
                f"(Python {floor[0]}.{floor[1]}+ only)")
    return None


def runtime_missing_wheel(tensorrt_version: str, cuda_bindings_version: str) -> str | None:
    """Why this TensorRT / cuda-bindings pair cannot run on this Python (a skip reason), or None."""
    return missing_wheel("tensorrt-cu12-bindings", tensorrt_version) or missing_wheel("cuda-bindings",
                                                                                    cuda_bindings_version)


def skip_without_runtime(tensorrt_version: str, cuda_bindings_version: str) -> None:
    """In a test: skip, with the reason, when this TensorRT / cuda-bindings pair cannot run on this Python."""
    reason = runtime_missing_wheel(tensorrt_version, cuda_bindings_version)
    if reason is not None:
        import pytest

        pytest.skip(reason)


def pip_target(package: str, version: str, fetch: bool = False) -> Path:
    """``package==version`` installed (no dependencies) into a folder of its own; reused when present.

    Only the setup step fetches (``fetch=True``); a test finding the folder missing says how to make it.
    """
    reason = missing_wheel(package, version)
    if reason is not None:
        raise RuntimeError(reason)
    target = CACHE / f"{package}-{version}"
    if (target / ".installed").is_file():
        return target
    if not fetch:
        raise RuntimeError(f"{package}=={version} is not prepared in {CACHE}: run bash scripts/setup_env.sh "
                           "(it fetches the pinned bindings wheels and builds their stub libraries)")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
               "--target", str(partial), f"{package}=={version}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    (target / ".installed").touch()
    return target


def stub_libraries(bindings: Path) -> Path:
    """Compile the stub libnvinfer/libnvonnxparser/libnvinfer_plugin that ``tensorrt.so`` links against."""
    stubs = bindings / "stub-libraries"
    if (stubs / ".built").is_file():
        return stubs
    library = bindings / "tensorrt_bindings" / "tensorrt.so"
    for tool in ("nm", "readelf", "gcc"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"building the TensorRT stub libraries needs {tool} (binutils, gcc) on PATH")
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(libnv[^\]]+)\]", run(["readelf", "-d", str(library)]))
    symbols = sorted(
        line.split()[-1] for line in run(["nm", "-D", "--undefined-only", str(library)]).splitlines()
        if line.split()[0] == "U" and "@" not in line and not line.split()[-1].startswith(("Py", "_Py", "dl"))
    )
    if not needed or not symbols:
        raise RuntimeError(f"{library}: found no libnv* dependencies ({needed}) or factory symbols ({symbols})")
    stubs.mkdir(exist_ok=True)
    source = stubs / "stub.c"
    source.write_text("".join(f"void *{symbol}(void) {{ return 0; }}\n" for symbol in symbols))
    for name in needed:
        run(["gcc", "-shared", "-fPIC", "-o", str(stubs / name), str(source)])
    (stubs / ".built").touch()
    return stubs


def run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr}")
    return result.stdout


def installed_cuda_bindings() -> str | None:
    try:
        import cuda.bindings
    except ImportError:
        return None
    return cuda.bindings.__version__


def environment(tensorrt_version: str, cuda_bindings_version: str) -> dict[str, str]:
    """Environment of a subprocess that imports these two real versions (fetched and stubbed first)."""
    bindings = pip_target("tensorrt-cu12-bindings", tensorrt_version)
    stubs = stub_libraries(bindings)
    paths = [str(bindings)]
    if installed_cuda_bindings() != cuda_bindings_version:
        paths.append(str(pip_target("cuda-bindings", cuda_bindings_version)))
    paths += [str(REPOSITORY), str(TEST_ROOT)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(stubs)] + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
    return env


def run_scenario(tensorrt_version: str, cuda_bindings_version: str, actions: list[dict], *,
                 gpu: tuple[str, str] = ("NVIDIA Stand-in GPU", "8.7"), driver_cuda: str | None = None) -> dict:
    """Run scenario.py's ``actions`` in a process that imports these real versions; its JSON report."""
    import json

    request = {"tensorrt": tensorrt_version, "cuda_bindings": cuda_bindings_version, "gpu": list(gpu),
               "driver_cuda": driver_cuda or f"{cuda_bindings_version.split('.')[0]}.0", "actions": actions}
    result = subprocess.run([sys.executable, "-m", "tensorrt_double.scenario"], input=json.dumps(request),
                            capture_output=True, text=True, timeout=300, cwd=str(TEST_ROOT),
                            env=environment(tensorrt_version, cuda_bindings_version))
    if result.returncode != 0:
        raise RuntimeError(f"scenario for TensorRT {tensorrt_version} failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout)


def node_environment(tensorrt_version: str, cuda_bindings_version: str, base: dict[str, str], *,
                     batch_log: Path, execute_s: float = 0.0,
                     gpu: tuple[str, str] = ("NVIDIA Stand-in GPU", "8.7")) -> tuple[list[str], dict[str, str]]:
    """(command, environment) of a depth_node whose TensorRT and CUDA are the doubles (node_process.py):
    ``base`` (a ROS environment) plus the real bindings of these versions; pass ``--ros-args ...`` after it."""
    import json

    env = environment(tensorrt_version, cuda_bindings_version)
    merged = dict(base)
    for name in ("PYTHONPATH", "LD_LIBRARY_PATH"):
        merged[name] = env[name]
    merged["ICM_TENSORRT_DOUBLE"] = json.dumps({
        "tensorrt": tensorrt_version, "cuda_bindings": cuda_bindings_version, "gpu": list(gpu),
        "driver_cuda": f"{cuda_bindings_version.split('.')[0]}.0", "batch_log": str(batch_log), "execute_s": execute_s})
    return [sys.executable, "-m", "tensorrt_double.node_process"], merged


def prepare_all() -> None:
    """The setup step: fetch every pinned bindings version and build its stub libraries (idempotent)."""
    for version in TENSORRT_VERSIONS:
        stub_libraries(pip_target("tensorrt-cu12-bindings", version, fetch=True))
    for version in CUDA_BINDINGS_VERSIONS:
        reason = missing_wheel("cuda-bindings", version)
        if reason is not None:
            print(f"setup_bindings: not fetched: {reason}; the tests that need it are skipped", file=sys.stderr)
        elif installed_cuda_bindings() != version:
            pip_target("cuda-bindings", version, fetch=True)


if __name__ == "__main__":
    prepare_all()
