"""Replay evaluation (../replay_eval.py, ../replay_fleet.py): bag reading, stamp pairing, scoring, reports, live playback.

    track_truth.py  per-instance truth over time (synthetic closing-object drives): layout, PointCloud2 form
    bag_reader.py   the topics an evaluation needs, from rosbag2 (sqlite3, mcap) or ROS 1 bags, without ROS
    pairing.py      image, ground truth, camera_info and labels paired by header stamp
    scoring.py      predicted depth against ground truth, frame by frame (processing/metrics.py)
    track_scoring.py  tracks against that truth: motmetrics identity figures, errors by band, calibration
    evaluation.py   what one run collects: frame rows, skip reasons, latencies, sample frames
    plots.py        small PNG plots for report.md (OpenCV)
    report.py       metrics.json, frames.csv, instances.csv, tracks.csv, report.md
    bag_output.py   --write-bag: the evaluated bag with the node's outputs added
    offline.py      DepthPipeline over a bag's frames (no ROS graph)
    live.py         a bag played into a ROS graph, a running depth_node's outputs scored
    command_line.py the topic, model and scoring options replay_eval and replay_fleet share
    drive_list.py   replay_fleet's DRIVE arguments (bags, folders, lists) -> the bags
    fleet.py        many drives: per-drive results, overall figures, candidate against baseline, the gate
    fleet_report.py fleet.json, drives.csv, report.md of a fleet run
    fleet_runner.py one Ray task per drive (Ray imported here only)

Imports run up this list: a module imports only modules above it. From the rest of icm_depth_ros:
processing/, instances/ and inference/, never node/ (test/icm_depth_ros/test_layout.py checks). No PyTorch
and nothing from training/: it runs where the node runs.
"""
