"""DDP on CPU (gloo, 2 processes): exactly-once sharding across ranks, weights in sync."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from .conftest import make_cfg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out_dir, result_dir):
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    from gen5dask.train.dataset import StampStream, arm_selection, make_loader
    from gen5dask.train.distributed import process_group
    from gen5dask.train.models import arch_spec, build_model
    from gen5dask.train.trainer import train_arm

    torch.set_num_threads(1)
    with process_group("gloo"):
        cfg = make_cfg(out_dir, epochs=1, num_workers=0)
        arm = next(a for a in cfg.ablation.arms if a.name == "remediated")
        d = arm_selection(train_path=cfg.layout.train, hardneg_path=cfg.layout.hardneg,
                          split="train", inject_mode="calibrated", hard_negatives=True, seed=1)
        s = StampStream(d.selections, batch_size=8, seed=1, shuffle=True, shuffle_buffer=8)
        s.set_epoch(0)
        ids = [b["sample"].numpy() for b in make_loader(s)]
        torch.manual_seed(0)
        model = build_model(arch_spec("resnet_small"))
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        batch = next(iter(make_loader(s)))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            ddp(batch["image"]), batch["label"])
        loss.backward()
        opt.step()
        flat = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()
        res = train_arm(cfg, arm, progress=False)
        np.savez(os.path.join(result_dir, f"rank{rank}.npz"), ids=np.concatenate(ids),
                 n_batches=len(ids), weights=flat,
                 want=np.concatenate([x.sample for x in d.selections]),
                 n_train=res["history"][-1]["n_train"])


@pytest.mark.slow
def test_ddp_two_ranks_gloo(run_dir, tmp_path):
    port = _free_port()
    mp.spawn(_worker, args=(2, port, str(run_dir), str(tmp_path)), nprocs=2, join=True)
    r0 = np.load(tmp_path / "rank0.npz")
    r1 = np.load(tmp_path / "rank1.npz")
    assert np.intersect1d(r0["ids"], r1["ids"]).size == 0
    assert np.array_equal(np.sort(np.concatenate([r0["ids"], r1["ids"]])), np.sort(r0["want"]))
    assert int(r0["n_batches"]) == int(r1["n_batches"])
    np.testing.assert_array_equal(r0["weights"], r1["weights"])
    assert int(r0["n_train"]) == r0["want"].size  # trainer saw every sample once across ranks
    assert (run_dir / "models" / "remediated.pt").exists()
