"""Distributed training: DDP gradient averaging through any generator method, sharding, per-rank seeds and
counts, metric reduction (2 gloo processes), and the recipes under torchrun."""

import json
import os
import re
import socket
import subprocess
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from seqgan import distributed
from seqgan.config import load_config
from tests.conftest import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """One rank: checks run here, results are saved for the parent to compare across ranks."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from seqgan.losses import sequence_nll
    from seqgan.models.lstm import LSTMGenerator

    torch.manual_seed(0)
    model = LSTMGenerator(11, embed_dim=4, hidden_dim=5)
    if rank == 1:  # DDP must start every rank from rank 0's weights
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
    wrapped = distributed.wrap(model, torch.device("cpu"))
    assert isinstance(wrapped, distributed.DistributedModule) and distributed.unwrap(wrapped) is model
    start = {k: v.clone() for k, v in model.state_dict().items()}
    assert set(wrapped.state_dict()) == set(start)  # no "module." prefix

    # a different batch per rank, through a method other than forward (masked_logits via sequence_nll)
    gen = torch.Generator().manual_seed(100 + rank)
    tokens = torch.randint(4, 11, (3, 6), generator=gen)
    tokens[:, -1] = 2  # EOS
    local = LSTMGenerator(11, embed_dim=4, hidden_dim=5)
    local.load_state_dict(start)
    total, count = sequence_nll(local, tokens)
    (total / count).backward()
    local_grads = [p.grad.clone() for p in local.parameters()]

    total, count = sequence_nll(wrapped, tokens)
    (total / count).backward()
    ddp_grads = [p.grad.clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    opt.step()

    torch.save(
        {
            "start": start,
            "local_grads": local_grads,
            "ddp_grads": ddp_grads,
            "after": {k: v.clone() for k, v in model.state_dict().items()},
            "checksum": distributed.parameter_checksum(model),
            "in_sync": distributed.in_sync(model),
            "metrics": distributed.mean_metrics({"a": float(rank), "b": 2.0 * rank + 1, "name": "x"}),
            "any_rank": (distributed.any_rank(rank == 1), distributed.any_rank(False)),
            "shard": distributed.shard(torch.arange(7)),
            "seed": distributed.rank_seed(5),
            "gathered": distributed.gather_objects({"rank": rank}),
            "per_rank": distributed.per_rank_config(
                load_config(None, ["seqgan.batch_size=64", "seqgan.d_num_negatives=101"])
            ),
        },
        f"{out_dir}/rank{rank}.pt",
    )
    dist.destroy_process_group()


def test_two_gloo_ranks(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    # both ranks started from rank 0's weights
    assert all(torch.equal(r0["start"][k], r1["start"][k]) for k in r0["start"])
    # each rank's gradient is the mean of the two ranks' own gradients (different data: they differ)
    for g0, g1, d0, d1 in zip(
        r0["local_grads"], r1["local_grads"], r0["ddp_grads"], r1["ddp_grads"], strict=True
    ):
        torch.testing.assert_close(d0, (g0 + g1) / 2)
        assert torch.equal(d0, d1)
    assert any(not torch.equal(g0, g1) for g0, g1 in zip(r0["local_grads"], r1["local_grads"], strict=True))
    # after the step the weights are bit-identical, and changed
    assert all(torch.equal(r0["after"][k], r1["after"][k]) for k in r0["after"])
    assert any(not torch.equal(r0["after"][k], r0["start"][k]) for k in r0["after"])
    assert r0["checksum"] == r1["checksum"] and r0["in_sync"] and r1["in_sync"]
    # metrics: the mean over ranks; non-numbers kept
    assert r0["metrics"] == r1["metrics"] == {"a": 0.5, "b": 2.0, "name": "x"}
    assert r0["any_rank"] == r1["any_rank"] == (True, False)
    # sharding: equal shares, the remainder dropped; seeds offset per rank (rank 0 keeps the seed)
    assert r0["shard"].tolist() == [0, 2, 4] and r1["shard"].tolist() == [1, 3, 5]
    assert r0["seed"] == 5 and r1["seed"] == 5 + distributed.RANK_SEED_STRIDE
    assert r0["gathered"] == [{"rank": 0}, {"rank": 1}]
    per_rank = r0["per_rank"]
    assert (per_rank.seqgan.batch_size, per_rank.seqgan.d_num_negatives) == (32, 50)
    assert per_rank.pretrain.batch_size == 32 and per_rank.seed == 0  # default 64, halved; seed untouched


def test_single_process_is_a_no_op():
    model = torch.nn.Linear(2, 2)
    assert not distributed.is_distributed() and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.wrap(model, torch.device("cpu")) is model and distributed.unwrap(model) is model
    data = torch.arange(5)
    assert distributed.shard(data) is data and distributed.rank_seed(3) == 3
    cfg = load_config(None, [])
    assert distributed.per_rank_config(cfg) is cfg
    assert distributed.mean_metrics({"a": 1.0}) == {"a": 1.0} and distributed.any_rank(True)
    distributed.check_in_sync(model)  # nothing to compare


def _torchrun(recipe: str, args: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        f"recipes/{recipe}.py",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _checksums(stderr: str) -> dict[int, list[str]]:
    """Each rank's parameter checksums, in the order printed (``rank R parameters after ...: sha256 ...``)."""
    sums: dict[int, list[str]] = {}
    for m in re.finditer(
        r"rank (\d+) parameters after [^:]*: sha256 ([0-9a-f]{64}(?: [0-9a-f]{64})*)", stderr
    ):
        sums.setdefault(int(m.group(1)), []).append(m.group(2))
    return sums


def test_torchrun_pretrain_and_adversarial(tmp_path):
    args = [
        "--config",
        "recipes/configs/tiny.yaml",
        f"out_dir={tmp_path}",
        "num_threads=1",
        "pretrain.num_print_samples=0",
        "adversarial.eval_every=100",
        "adversarial.eval_num_samples=50",
        "checkpoint_keep=2",
    ]
    pre = _torchrun("pretrain", args)
    assert pre.returncode == 0, pre.stderr[-4000:]
    adv = _torchrun("adversarial", args)
    assert adv.returncode == 0, adv.stderr[-4000:]

    # one set of output files, written by rank 0 only
    names = {p.name for p in tmp_path.iterdir()}
    numbered = {n for n in names if n.split(".")[0].split("_")[-1].isdigit()}
    assert names - numbered == {
        "adversarial.pt",
        "adversarial_config.yaml",
        "adversarial_curves.png",
        "adversarial_eval.json",
        "adversarial_metrics.jsonl",
        "config.yaml",
        "metrics.jsonl",
        "pretrain.pt",
        "pretrain_curves.png",
    }
    # the last 2 numbered checkpoints of each stage
    assert {"adversarial_0001.pt", "adversarial_0002.pt"} <= numbered and len(numbered) == 4
    records = [json.loads(line) for line in (tmp_path / "adversarial_metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2]  # one record per epoch, not one per rank
    assert pre.stdout.count("epoch 1:") == 1  # only rank 0 prints

    # every checkpoint of both stages: the two ranks' parameters were bit-identical
    for res in (pre, adv):
        sums = _checksums(res.stderr)
        assert set(sums) == {0, 1} and sums[0] == sums[1] and len(sums[0]) >= 2
    # ...and training changed them between checkpoints
    adv_sums = _checksums(adv.stderr)[0]
    assert adv_sums[0] != adv_sums[-1]
    ckpt = torch.load(tmp_path / "adversarial.pt", weights_only=True)
    assert len(ckpt["rank_rng"]) == 2  # both ranks' random streams, for --resume with 2 processes
    assert ckpt["config"]["seqgan"]["batch_size"] == 16  # the global batch, not the per-rank one


def test_torchrun_conditional_chatbot_with_bf16_nan_skip_and_kept_checkpoints(tmp_path):
    """The chatbot goes through the same stages: two processes, bf16 autocast, nan_policy=skip, numbered
    checkpoints; the ranks stay bit-identical and one set of files is written."""
    args = [
        "--config",
        "recipes/configs/chat_tiny.yaml",
        f"out_dir={tmp_path}",
        "pretrain.num_print_samples=0",
        "precision=bf16",
        "nan_policy=skip",
        "checkpoint_keep=2",
        "adversarial.eval_every=100",
        "conditional.eval_num_pairs=20",
    ]
    pre = _torchrun("pretrain", args)
    assert pre.returncode == 0, pre.stderr[-4000:]
    adv = _torchrun("adversarial", args)
    assert adv.returncode == 0, adv.stderr[-4000:]
    for res in (pre, adv):
        sums = _checksums(res.stderr)
        assert set(sums) == {0, 1} and sums[0] == sums[1] and len(sums[0]) >= 2
    names = {p.name for p in tmp_path.iterdir()}
    assert {"adversarial_0001.pt", "adversarial_0002.pt", "adversarial.pt", "pretrain.pt"} <= names
    ckpt = torch.load(tmp_path / "adversarial.pt", weights_only=True)
    assert len(ckpt["rank_rng"]) == 2 and ckpt["generator"]["spec"]["kind"] == "seq2seq"
    assert ckpt["config"]["precision"] == "bf16" and ckpt["config"]["nan_policy"] == "skip"
    records = [json.loads(line) for line in (tmp_path / "adversarial_metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2] and records[-1]["nan/skipped_steps"] == 0
    assert "generator/teacher_forcing_nll" in records[-1] and "discriminator/acc_mismatch" in records[-1]
