"""Data-parallel CNN training under torchrun, through `calibrate run`."""

from __future__ import annotations

import json

import pytest

from analysis.session_format import read_manifest
from tests.conftest import run_cli
from workloads.registry import prepare

pytest.importorskip("torch.distributed.run")


def test_two_process_ddp_resnet18_under_torchrun(tmp_path) -> None:
    out = tmp_path / "ddp"
    r = run_cli("run", "--meter", "sim:wattsup", "--meter", "cpu-model", "--workload", "resnet18",
                "--nproc-per-node", "2", "--image-size", "16", "--epochs", "1", "--batch-size", "8",
                "--param", "train_size=64", "--param", "val_size=32", "--param", "threads=1",
                "--baseline", "0", "--plain", "--out", str(out), timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    m = read_manifest(out)
    argv = m["workload"]["argv"]
    assert argv[1:3] == ["-m", "torch.distributed.run"]
    assert argv[argv.index("--rdzv-endpoint") + 1] == "127.0.0.1:0"  # one node: a free port on loopback
    result = m["workload"]["result"]
    assert result["world_size"] == 2 and result["backend"] == "gloo"
    assert 0 <= result["accuracy"] <= 1 and result["images_per_s"] > 0
    assert result["val_samples"] == 32  # the accuracy is over the whole validation set, both shards
    assert result["steps"] == 4  # 8 batches of 8, half to each rank
    assert result["samples_seen"] == 2 * (4 + 2) * 8  # both ranks' images, 2 warm-up steps each
    summary = json.loads((out / "summary.json").read_text())["workload"]
    assert isinstance(summary["accuracy"], float) and 0 <= summary["accuracy"] <= 1
    assert isinstance(summary["images_per_s"], float) and summary["images_per_s"] > 0
    assert summary["images_per_s"] == result["images_per_s"]
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    ranked = [e for e in events if "rank" in e]
    by_rank = {e["rank"] for e in ranked}
    assert by_rank == {0, 1} and all(isinstance(e["host"], str) and e["host"] for e in ranked)
    r0 = [(e["kind"], e["phase"]) for e in ranked if e["rank"] == 0 and e["kind"].startswith("phase_")]
    r1 = [(e["kind"][5:], e["phase"]) for e in ranked if e["rank"] == 1 and e["kind"].startswith("rank_phase_")]
    assert ("phase_start", "epoch-1") in r0 and r0 == r1  # every rank's phases, rank 0's the session's
    assert sum(e["kind"] == "result" for e in events) == 1  # rank 0's, with the global figures
    assert sum(e["kind"] == "rank_result" for e in events) == 1


@pytest.mark.parametrize("args,msg", [
    (["--nproc-per-node", "0"], "nproc_per_node"),
    (["--nproc-per-node", "2", "--rdzv-endpoint", "nonsense"], "HOST:PORT"),
    (["--nnodes", "2"], "needs rdzv_endpoint"),
    (["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "node0:29500"], "node_rank=2 must be < nnodes=2"),
    (["--nproc-per-node", "2", "--backend", "nccl"], "backend=nccl needs device=cuda"),
])
def test_bad_distributed_options_are_one_line(tmp_path, args, msg) -> None:
    out = tmp_path / "never"
    r = run_cli("run", "--meter", "sim:wattsup", "--workload", "resnet18", *args, "--out", str(out), timeout=60)
    assert r.returncode == 2 and msg in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()


def test_multinode_argv_uses_the_rendezvous() -> None:
    w = prepare("resnet18", {"nproc_per_node": 4, "nnodes": 2, "node_rank": 1, "rdzv_endpoint": "node0:29500"})
    assert w.argv[3:13] == ["--nproc-per-node", "4", "--nnodes", "2", "--node-rank", "1", "--rdzv-backend", "c10d",
                            "--rdzv-endpoint", "node0:29500"]
    assert w.argv[13:19] == ["--max-restarts", "0", "-m", "workloads", "resnet18", "--params"]
    assert json.loads(w.argv[19])["nproc_per_node"] == 4
    single = prepare("resnet18", {})
    assert single.argv[1:3] == ["-m", "workloads"]
