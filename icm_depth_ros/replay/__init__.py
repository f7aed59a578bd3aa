"""Replay evaluation (replay_eval.py): bag reading, stamp pairing, scoring, reports, live playback.

No PyTorch and nothing from training/: it runs where the node runs.
"""
