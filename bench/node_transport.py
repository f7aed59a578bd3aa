"""How 1242x375 rgb8 frames at 30 Hz reach depth_node and how its outputs reach a peer, per transport set-up.

Every process is separate (node, camera client, peer), on a private ROS_DOMAIN_ID with localhost discovery.
Scenarios, in one run:

    plain                  node started plain (python -m, no Fast DDS variable: it applies its own profile);
                           camera with Fast DDS defaults, reliable publisher (rclcpp / image_transport default)
    plain_best_effort      the same with a best-effort (sensor data) camera: what the node cannot fix
    launch_profile         node and camera both given config/fastdds_shm_udp.xml (as the launch file's way plus
                           a driver configured like the README says); best-effort camera
    udp_peer               as plain, plus a viewer whose participant has UDPv4 only (another host, or a
                           container without /dev/shm) counting the node's outputs
    transport_only_*       no node: a bare subscriber with the node's profile and keep-last-1 subscription
                           (reliable / best effort) counts the default-Fast-DDS camera's images: the transport's
                           own ceiling, without the node's executor competing with inference for the CPU

Per scenario: delivered = frames the node received (its /diagnostics) / frames sent; answered = frames whose
depth/image came back to the camera process (the node drops frames it cannot keep up with in its
latest-frame slot, by design; dropped_in_slot counts them); latency = image stamp -> depth/image arrival at
the camera process (inference included); udp_peer: outputs the UDP-only viewer received / frames the node
processed.

    python bench/node_transport.py [--model models/demo/icm_demo.onnx] [--frames 150] [--rate 30] [--json]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from json_output import run_and_report  # noqa: E402

from icm_depth_ros.node.local_graph import (  # noqa: E402
    BENCH_DOMAIN_IDS, FASTDDS_PROFILE, UDP_ONLY_PROFILE, default_fastdds_environment, pick_domain_id, stop_process,
)

CLIENT = ROOT / "bench" / "transport_client.py"
# name: (node given the package profile explicitly, camera given it, camera publisher QoS, UDP-only peer)
SCENARIOS = {
    "plain": (False, False, "reliable", False),
    "plain_best_effort": (False, False, "sensor_data", False),
    "launch_profile": (True, True, "sensor_data", False),
    "udp_peer": (False, False, "reliable", True),
}
# name: (camera publisher QoS, the counting subscriber's reliability); camera with Fast DDS defaults
TRANSPORT_ONLY = {
    "transport_only_reliable": ("reliable", "reliable"),
    "transport_only_best_effort": ("sensor_data", "sensor_data"),
}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "demo" / "icm_demo.onnx")
    parser.add_argument("--frames", type=int, default=150, help="frames per scenario")
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--only", nargs="+", choices=[*SCENARIOS, *TRANSPORT_ONLY])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    args = parser.parse_args(argv)
    return run_and_report(measure, args)


def measure(args: argparse.Namespace) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="node_transport_"))
    (folder / "udp_only.xml").write_text(UDP_ONLY_PROFILE)
    report = {"model": str(args.model), "frames_per_scenario": args.frames, "rate_hz": args.rate,
              "image": "1242x375 rgb8 (1.4 MB)", "scenarios": {}}
    for name in args.only or [*SCENARIOS, *TRANSPORT_ONLY]:
        run = transport_only if name in TRANSPORT_ONLY else run_scenario
        report["scenarios"][name] = run(name, args, folder)
        print(f"{name}: {json.dumps(report['scenarios'][name])}", file=sys.stderr, flush=True)
    return report


def clean_environment() -> dict:
    return default_fastdds_environment(pick_domain_id(BENCH_DOMAIN_IDS))


def run_scenario(name: str, args, folder: Path) -> dict:
    node_profile, camera_profile, publisher_qos, udp_peer = SCENARIOS[name]
    env = clean_environment()
    with_profile = {**env, "FASTDDS_DEFAULT_PROFILES_FILE": str(FASTDDS_PROFILE)}
    log = open(folder / f"{name}_node.log", "w")
    node = subprocess.Popen([sys.executable, "-m", "icm_depth_ros.depth_node", "--ros-args", "-p",
                             f"model_path:={args.model}", "-p", "backend:=onnxruntime"],
                            env=with_profile if node_profile else env, stdout=log, stderr=subprocess.STDOUT)
    peer = None
    try:
        if not wait_for_text(folder / f"{name}_node.log", "active", node, 60):
            raise SystemExit(f"node did not start:\n{(folder / f'{name}_node.log').read_text()}")
        seconds = args.frames / args.rate
        if udp_peer:
            peer_env = {**env, "FASTDDS_DEFAULT_PROFILES_FILE": str(folder / "udp_only.xml")}
            peer = subprocess.Popen([sys.executable, str(CLIENT), "--only-receive", "--seconds", str(seconds + 12)],
                                    env=peer_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        camera = subprocess.run([sys.executable, str(CLIENT), "--rate", str(args.rate), "--frames", str(args.frames),
                                 "--size", "375x1242", "--publisher-qos", publisher_qos, "--drain", "4"],
                                env=with_profile if camera_profile else env, capture_output=True, text=True,
                                timeout=seconds + 120)
        if camera.returncode != 0:
            raise SystemExit(f"{name}: camera client failed: {camera.stderr[-2000:]}")
        result = json.loads(camera.stdout.strip().splitlines()[-1])
        counts = result.get("node", {})
        sent = result["frames_sent"]
        entry = {
            "node_profile": "package profile (set by the node itself)" if not node_profile else "package profile (given)",
            "camera_profile": "package profile" if camera_profile else "Fast DDS defaults",
            "camera_publisher_qos": publisher_qos,
            "frames_sent": sent,
            "received_by_node": counts.get("received_frames"),
            "delivered_fraction": round(counts["received_frames"] / sent, 3) if counts.get("received_frames") is not None else None,
            "processed_by_node": counts.get("processed_frames"),
            "dropped_in_slot": counts.get("dropped_frames"),
            "answered": result["answered"],
            "latency_p50_ms": result.get("latency_p50_ms"),
            "latency_p99_ms": result.get("latency_p99_ms"),
        }
        if peer is not None:
            out, err = peer.communicate(timeout=seconds + 60)
            received = json.loads(out.strip().splitlines()[-1])["received"]
            processed = counts.get("processed_frames") or 0
            entry["udp_peer_received"] = received
            entry["udp_peer_fraction_of_processed"] = (round(received["depth/image"] / processed, 3) if processed
                                                       else None)
        return entry
    finally:
        if peer is not None and peer.poll() is None:
            peer.kill()
        stop_process(node)
        log.close()


def transport_only(name: str, args, folder: Path) -> dict:
    publisher_qos, reliability = TRANSPORT_ONLY[name]
    env = clean_environment()
    seconds = args.frames / args.rate
    counter = subprocess.Popen([sys.executable, str(CLIENT), "--count-images", reliability, "--seconds",
                                str(seconds + 15)], env={**env, "FASTDDS_DEFAULT_PROFILES_FILE": str(FASTDDS_PROFILE)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        camera = subprocess.run([sys.executable, str(CLIENT), "--rate", str(args.rate), "--frames", str(args.frames),
                                 "--size", "375x1242", "--publisher-qos", publisher_qos, "--no-node", "--drain", "2"],
                                env=env, capture_output=True, text=True, timeout=seconds + 120)
        if camera.returncode != 0:
            raise SystemExit(f"{name}: camera client failed: {camera.stderr[-2000:]}")
        out, _ = counter.communicate(timeout=seconds + 60)
    finally:
        if counter.poll() is None:
            counter.kill()
    counted = json.loads(out.strip().splitlines()[-1])
    sent = json.loads(camera.stdout.strip().splitlines()[-1])["frames_sent"]
    return {"camera_profile": "Fast DDS defaults", "camera_publisher_qos": publisher_qos,
            "subscriber": f"bare, package profile, {reliability}, keep last 1", "frames_sent": sent,
            "received": counted["images_received"], "delivered_fraction": round(counted["images_received"] / sent, 3),
            "latency_p50_ms": counted["latency_p50_ms"]}


def wait_for_text(path: Path, text: str, process, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.1)
    return False


if __name__ == "__main__":
    main()
