"""Two CPU processes with gloo (as torchrun starts them) train a few steps and end with identical weights."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from training.config import load_config
from training.train import train

TINY = ["model.encoder=resnet10t", "model.img_size=[64,128]", "model.dim=32", "model.num_clusters=8", "model.iterations=1",
        "data.train_length=8", "data.val_length=3", "data.num_workers=0", "train.batch_size=2",
        "train.accumulate=2", "train.steps=3", "train.eval_every=3", "train.image_every=0", "eval.batch_size=2"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker(rank: int, world_size: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from training import distributed

    try:
        config = load_config(None, TINY + [f"train.output_dir={folder}/run", "name=ddp"])
        summary = train(config)
        torch.save({"weights": summary["model"].state_dict(), "metrics": summary["metrics"]},
                   f"{folder}/rank{rank}.pt")
    finally:
        distributed.cleanup()


@pytest.mark.slow
def test_two_gloo_ranks_end_with_identical_weights(tmp_path):
    mp.start_processes(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    initial = load_config(None, TINY + ["name=ddp"])
    torch.manual_seed(initial.train.seed)
    from training.config import build_model

    start = build_model(initial).state_dict()
    changed = 0
    for name, tensor in ranks[0]["weights"].items():
        assert torch.equal(tensor, ranks[1]["weights"][name]), f"{name} differs between the ranks"
        changed += not torch.equal(tensor, start[name])
    assert changed > 10  # the ranks trained (the same) weights, not merely kept the initial ones
    # Metrics are reduced over ranks: both see the same figures over all 3 held-out images.
    assert ranks[0]["metrics"] == ranks[1]["metrics"] and ranks[0]["metrics"]["images"] == 3
    # Only rank 0 writes: one checkpoint, one log.
    assert (tmp_path / "run" / "last.pt").exists() and len((tmp_path / "run" / "log.jsonl").read_text()) > 0
