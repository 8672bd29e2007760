"""DDP through torchrun on CPU (gloo): 2 processes follow the single-process loss trajectory with
the same global batch, for the SPPE and RMPE loops; PGPG shards the detector pass."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from core import PROJECT_ROOT
from core.errors import UserError
from training.ddp import CPUSyncBatchNorm, convert_sync_batchnorm, per_rank_batch
from training.metrics import read_csv

TINY = {
    "model": {"arch": "hourglass", "input_size": [64, 48], "stacks": 1, "features": 16, "depth": 3, "sigma": 1.0,
              "loss": "softmax"},
    "data": {"train": [{"synthetic": {"num_images": 24, "seed": 21, "image_size": [96, 128], "people": [1, 2]}}],
             "val": [{"synthetic": {"num_images": 4, "seed": 22, "image_size": [96, 128], "people": [1, 2]}}]},
    # lr 3e-4: at high rates the first steps are chaotic and even a different thread count
    # (summation order) moves a single-process trajectory by ~1e-2.
    "optim": {"lr": 0.0003, "epochs": 2, "batch_size": 8},
    "eval": {"flip_test": False},
    "run": {"threads": 1, "log_every": 1, "progress": False},
}


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(PROJECT_ROOT))
    env.pop("WORLD_SIZE", None)
    return env


def _launch(nproc: int, task: str, config, out, *sets, timeout=240):
    """torchrun with ``nproc`` CPU processes (gloo) in a subprocess."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "main.py", "train", task, "--config", str(config), "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    cfg = dict(TINY, data=dict(TINY["data"], synthetic_dir=str(root / "data")))
    path = root / "tiny.yaml"
    path.write_text(json.dumps(cfg))
    return root, path


@pytest.mark.parametrize("task, sets", [
    ("sppe", ()),
    ("rmpe", ("rmpe.stages=[{name: sppe, epochs: 1, lr: 0.0003, train: [sppe], proposal_prob: 0.0}, "
              "{name: stn, epochs: 1, lr: 0.0003, train: [stn]}]", "rmpe.loc_size=[32, 24]")),
])
def test_two_processes_follow_one(tiny_config, task, sets, cli):
    root, config = tiny_config
    args = ["train", task, "--config", str(config), "--out", str(root / f"{task}_1")]
    for s in sets:
        args += ["--set", s]
    assert cli(args) == 0  # one process, here
    _launch(2, task, config, root / f"{task}_2", *sets)
    one = read_csv(root / f"{task}_1" / "steps.csv")
    two = read_csv(root / f"{task}_2" / "steps.csv")
    assert len(one) == len(two) >= 6
    a = np.array([r["loss"] for r in one])
    b = np.array([r["loss"] for r in two])
    assert a[0] == pytest.approx(b[0], rel=1e-5)  # identical first forward: same data, same sync-BN statistics
    np.testing.assert_allclose(b, a, rtol=2e-3)
    # the losses actually change (a trajectory, not a constant)
    assert np.ptp(a) > 0.05
    assert [r["lr"] for r in one] == pytest.approx([r["lr"] for r in two])


def _sync_bn_worker(rank, world, port, x, coef, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    bn = CPUSyncBatchNorm(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
    xr = x[rank::world].clone().requires_grad_(True)
    y = bn(xr)
    (y * coef[rank::world]).sum().backward()
    queue.put((rank, y.detach().numpy(), xr.grad.numpy(), bn.weight.grad.numpy(), bn.running_var.numpy()))
    dist.destroy_process_group()


def test_cpu_sync_batchnorm_equals_full_batch_batchnorm():
    """Two gloo ranks with half a batch each behave as one BatchNorm2d over the whole batch: same
    outputs, same input gradients (the statistics' gradient crosses ranks), weight gradients that
    sum to the full one, same running variance. A channel mean of 100 with std 0.1 checks that the
    statistics do not cancel catastrophically."""
    torch.manual_seed(1)
    x = torch.randn(8, 3, 5, 4) * 0.1 + torch.tensor([100.0, -3.0, 0.0]).view(1, 3, 1, 1)
    coef = torch.randn(8, 3, 5, 4)
    ref = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
    xf = x.clone().requires_grad_(True)
    y = ref(xf)
    (y * coef).sum().backward()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = 29500 + os.getpid() % 1000
    procs = [ctx.Process(target=_sync_bn_worker, args=(r, 2, port, x, coef, queue)) for r in range(2)]
    for p in procs:
        p.start()
    got = {r: rest for r, *rest in (queue.get(timeout=120) for _ in procs)}
    for p in procs:
        p.join(timeout=60)
    for r in range(2):
        out, grad_x, _, running_var = got[r]
        np.testing.assert_allclose(out, y.detach().numpy()[r::2], atol=2e-4)
        np.testing.assert_allclose(grad_x, xf.grad.numpy()[r::2], rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(running_var, ref.running_var.numpy(), rtol=1e-4)
    np.testing.assert_allclose(got[0][2] + got[1][2], ref.weight.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_conversion_keeps_state_dict_keys():
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    keys = list(net.state_dict())
    conv = convert_sync_batchnorm(net, torch.device("cpu"))
    assert isinstance(conv[1], CPUSyncBatchNorm) and isinstance(conv[2][0], CPUSyncBatchNorm)
    assert list(conv.state_dict()) == keys


def test_global_batch_rule():
    assert per_rank_batch(32, 4) == 8
    with pytest.raises(UserError, match="multiple of 3"):
        per_rank_batch(32, 3)


def test_pgpg_detector_pass_is_sharded(tiny_config, blazepose_models):
    root, _ = tiny_config
    config = root / "pgpg.yaml"
    config.write_text(json.dumps({
        "data": {"train": [{"synthetic": {"num_images": 6, "seed": 31, "image_size": [240, 320], "people": [1, 2]}}],
                 "synthetic_dir": str(root / "data")},
        "pgpg": {"atoms": 1, "components": 1, "box_source": "detector", "iou_threshold": 0.3,
                 "detector": {"name": "blazepose", "interval": 1, "score_threshold": 0.3}},
        "run": {"threads": 1, "progress": False}}))
    _launch(2, "pgpg", config, root / "pgpg_2")
    cache = json.loads((root / "pgpg_2" / "detections_0.json").read_text())
    assert sorted(int(k) for k in cache["boxes"]) == list(range(6))  # both ranks' halves gathered
    model = json.loads((root / "pgpg_2" / "pgpg.json").read_text())
    assert model["info"]["matched"] >= 1
