"""What training/engine.py, train.py and checkpoint.py decide for a GPU, checked on the CPU: the AMP dtype
(with the capability query stubbed), host reads per step and per logging interval (counted), the loader
sizing, and the checkpoint's GradScaler and RNG entries."""
import math

import pytest
import torch
from torch.utils.data import default_collate

from training import engine
from training import train as train_module
from training.checkpoint import load_checkpoint, random_state, restore_random_state, save_checkpoint, training_state
from training.config import ConfigError, build_criterion, build_datasets, build_model, load_config
from training.distributed import Context
from training.engine import amp_dtype, build_optimizer, loader_settings, train_step
from training.train import train

TINY = ["model.encoder=resnet10t", "model.img_size=[64,128]", "model.dim=32", "model.num_clusters=8", "model.iterations=1",
        "data.train_length=8", "data.val_length=2", "data.num_workers=0", "data.augment=false",
        "train.batch_size=2", "train.accumulate=1", "train.image_every=0", "eval.batch_size=2"]
CPU = Context(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
# The ways a tensor's value reaches Python; on a GPU each one waits for the device.
HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy")


@pytest.mark.parametrize(("capability", "expected"), [((7, 5), torch.float16), ((7, 0), torch.float16),
                                                      ((8, 0), torch.bfloat16), ((8, 7), torch.bfloat16),
                                                      ((9, 0), torch.bfloat16)])
def test_bf16_only_where_the_gpu_computes_it_natively(monkeypatch, capability, expected):
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)  # a T4 says yes (emulated)
    assert amp_dtype(torch.device("cuda", 1)) == expected
    assert asked == [torch.device("cuda", 1)]  # the training process's own GPU is asked


class HostReads:
    """Counts every host read of a tensor (HOST_READS) while active."""

    def __init__(self, monkeypatch):
        self.count, self.active = 0, False
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self.counting(original))

    def counting(self, original):
        def read(tensor, *args, **kwargs):
            if self.active:
                self.count += 1
            return original(tensor, *args, **kwargs)
        return read

    def during(self, call):
        self.count, self.active = 0, True
        try:
            return call(), self.count
        finally:
            self.active = False


def tiny_parts(*overrides):
    config = load_config(None, TINY + list(overrides))
    torch.manual_seed(0)
    model, criterion = build_model(config, pretrained=False), build_criterion(config)
    train_set, _ = build_datasets(config)
    batches = [default_collate([train_set[i], train_set[i + 1]]) for i in (0, 2)]
    return config, model, criterion, batches


def test_a_step_reads_nothing_back_beyond_what_the_criterion_reads(monkeypatch):
    """The loop adds no host sync: a step of two micro-batches reads exactly what the network and the
    criterion read for those two micro-batches alone (the criterion's Hungarian matcher copies its costs)."""
    config, model, criterion, batches = tiny_parts()
    optimizer = build_optimizer(model, 1e-3, 1e-4, 0.05, (0.9, 0.999))
    reads = HostReads(monkeypatch)
    inherent = 0
    for batch in batches:
        _, count = reads.during(lambda b=batch: criterion.total(
            criterion(engine.as_float32(model(b["image"])), b), 0))
        inherent += count
    before = [p.detach().clone() for p in model.parameters()]
    result, count = reads.during(lambda: train_step(model, criterion, batches, optimizer, None, 1.0, CPU, amp=False,
                                                    step=0))
    assert count == inherent
    assert isinstance(result.loss, torch.Tensor) and isinstance(result.skipped, torch.Tensor)
    assert not result.skipped and math.isfinite(result.grad_norm) and result.grad_norm > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # it did update


def test_a_nonfinite_micro_batch_skips_the_update_on_the_device():
    _, model, criterion, batches = tiny_parts()
    optimizer = build_optimizer(model, 1e-3, 1e-4, 0.05, (0.9, 0.999))
    train_step(model, criterion, batches[:1], optimizer, None, 1.0, CPU, amp=False, step=0)  # optimiser state exists
    before = [p.detach().clone() for p in model.parameters()]
    steps_before = [state["step"].clone() for state in optimizer.state.values()]
    poisoned = dict(batches[1], image=batches[1]["image"].clone())
    poisoned["image"][0, 0, 0, 0] = float("nan")
    result = train_step(model, criterion, [batches[0], poisoned], optimizer, None, 1.0, CPU, amp=False, step=1)
    assert bool(result.skipped) and not math.isfinite(result.loss)
    for old, new in zip(before, model.parameters()):
        torch.testing.assert_close(new, old, rtol=0, atol=0)
    assert [state["step"] for state in optimizer.state.values()] == steps_before  # AdamW's count not advanced


def test_a_run_reads_the_device_once_per_logging_interval(tmp_path, monkeypatch):
    """8 steps, a log every 4, the only checkpoint and evaluation at the end: reads at steps 4 and 8 (the log)
    and once more at 8 (the non-finite counters before the checkpoint), none in between."""
    reads = []
    real = train_module.to_host

    def counted(values):
        reads.append(run_steps[-1] if run_steps else 0)
        return real(values)

    run_steps = []
    real_step = train_module.train_step

    def step_and_note(*args, **kwargs):
        run_steps.append(kwargs["step"] + 1)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "to_host", counted)
    monkeypatch.setattr(train_module, "train_step", step_and_note)
    config = load_config(None, TINY + [f"train.output_dir={tmp_path / 'run'}", "name=tiny", "train.steps=8",
                                       "train.log_every=4", "train.eval_every=100", "train.save_every=100"])
    summary = train(config)
    assert summary["step"] == 8 and summary["nonfinite"] == 0
    assert reads == [4, 8, 8]


def test_loader_workers_and_pinned_memory_are_sized_for_the_device(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(32)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert loader_settings(-1, True, 4, cuda) == engine.LoaderSettings(8, True, 4)
    assert loader_settings(-1, True, 2, cpu) == engine.LoaderSettings(2, False, 2)  # no pinning without CUDA
    assert loader_settings(3, False, 2, cuda) == engine.LoaderSettings(3, False, 2)  # an explicit count is kept
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # 8 processes share 32 cores: 4 each, one for training
    assert loader_settings(-1, True, 2, cuda).num_workers == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert loader_settings(-1, True, 2, cuda).num_workers == 0
    assert engine.LoaderSettings(0, True, 4).loader_kwargs()["prefetch_factor"] is None  # DataLoader refuses it


@pytest.mark.parametrize(("key", "value"), [("data.num_workers", -2), ("data.prefetch_factor", 0),
                                            ("data.num_workers", 65)])
def test_loader_keys_out_of_range_are_refused_by_name(key, value):
    with pytest.raises(ConfigError, match=rf"'{key}'.*got {value}"):
        load_config(None, [f"{key}={value}"])


def test_checkpoint_keeps_the_loss_scale_and_the_cuda_generator(tmp_path, monkeypatch):
    scaler = torch.amp.GradScaler("cpu")
    saved_scaler = {"scale": 512.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 100,
                    "_growth_tracker": 7}
    scaler.load_state_dict(saved_scaler)
    cuda_state = torch.arange(16, dtype=torch.uint8)
    set_to = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device=None: cuda_state.clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device=None: set_to.append((state, device)))
    model = torch.nn.Linear(2, 1)
    optimizer = build_optimizer(model, 1e-3, 1e-4, 0.0, (0.9, 0.999))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    gpu = torch.device("cuda", 0)
    torch.manual_seed(3)
    state = training_state(model, optimizer, scheduler, 5, {"model": {}}, {}, {}, 0, scaler, gpu)
    expected_draw = torch.rand(4)
    save_checkpoint(tmp_path / "last.pt", state)
    loaded = load_checkpoint(tmp_path / "last.pt")
    assert loaded["scaler"] == saved_scaler
    restored = torch.amp.GradScaler("cpu")
    restored.load_state_dict(loaded["scaler"])
    assert restored.get_scale() == 512.0 and restored.state_dict()["_growth_tracker"] == 7
    torch.rand(10)  # move the CPU generator on
    restore_random_state(loaded["rng"], gpu)
    torch.testing.assert_close(torch.rand(4), expected_draw, rtol=0, atol=0)
    assert len(set_to) == 1 and torch.equal(set_to[0][0], cuda_state) and set_to[0][1] == gpu
    restore_random_state(loaded["rng"], torch.device("cpu"))  # resumed without CUDA: its state is left alone
    assert len(set_to) == 1


def test_a_cpu_checkpoint_has_no_scaler_and_no_cuda_generator():
    model = torch.nn.Linear(2, 1)
    optimizer = build_optimizer(model, 1e-3, 1e-4, 0.0, (0.9, 0.999))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    state = training_state(model, optimizer, scheduler, 1, {}, {}, {}, 0)
    assert state["scaler"] == {} and set(state["rng"]) == {"torch"}
    assert set(random_state(torch.device("cpu"))) == {"torch"}


def test_with_a_grad_scaler_a_step_equals_the_unscaled_one_and_a_nonfinite_one_halves_the_scale():
    """The fp16 path (GradScaler, here the CPU one: the same code): scaling by a power of two and unscaling is
    exact, so the update equals the unscaled step's; a non-finite micro-batch skips the update and the
    scaler backs off, as after an fp16 overflow."""
    _, model, criterion, batches = tiny_parts()
    twin = build_model(load_config(None, TINY), pretrained=False)
    twin.load_state_dict(model.state_dict())
    plain = build_optimizer(twin, 1e-3, 1e-4, 0.05, (0.9, 0.999))
    optimizer = build_optimizer(model, 1e-3, 1e-4, 0.05, (0.9, 0.999))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    scaled = train_step(model, criterion, batches[:1], optimizer, scaler, 1.0, CPU, amp=False, step=0)
    unscaled = train_step(twin, criterion, batches[:1], plain, None, 1.0, CPU, amp=False, step=0)
    assert not scaled.skipped and scaler.get_scale() == 2.0**10
    torch.testing.assert_close(scaled.grad_norm, unscaled.grad_norm, rtol=1e-6, atol=0)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter, dict(twin.named_parameters())[name], rtol=1e-6, atol=1e-7, msg=name)
    before = [p.detach().clone() for p in model.parameters()]
    poisoned = dict(batches[1], image=torch.full_like(batches[1]["image"], float("nan")))
    result = train_step(model, criterion, [poisoned], optimizer, scaler, 1.0, CPU, amp=False, step=1)
    assert bool(result.skipped) and scaler.get_scale() == 2.0**9
    for old, new in zip(before, model.parameters()):
        torch.testing.assert_close(new, old, rtol=0, atol=0)


class NaNImages(torch.utils.data.Dataset):
    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return dict(self.dataset[index], image=torch.full((3, 64, 128), float("nan")))


def test_the_in_a_row_stop_is_seen_at_the_next_log_step(tmp_path):
    """Skips are read once per logging interval: with a log every 4 steps and max_nonfinite 2, a run whose
    every step is non-finite stops at step 4, naming the 4 skipped steps in a row."""
    config = load_config(None, TINY + [f"train.output_dir={tmp_path / 'run'}", "name=tiny", "train.steps=10",
                                       "train.log_every=4", "train.max_nonfinite=2", "train.eval_every=100",
                                       "train.save_every=100"])
    train_set, val_set = build_datasets(config)
    with pytest.raises(train_module.NonFiniteLossError, match=r"^4 steps in a row .*seen at step 4"):
        train(config, datasets=(NaNImages(train_set), val_set))
