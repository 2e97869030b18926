"""CFG parallelism (guidance branches across ranks), alone and with Ulysses inside each branch group,
on CPU with gloo: 2 and 4 processes must give the single-process latents (tiny weights, 2 steps).

Tolerance is the batched-vs-sequential branch tolerance of tests/test_pipeline.py: a branch group
runs fewer branches per batched forward than one process does.
"""

from __future__ import annotations

import multiprocessing as mp
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from nava_core.cfg_parallel import ParallelLayout, assign_branches
from nava_core.guidance import Branch
from nava_core.workers import _free_port
from nava_core.request import RenderRequest

REQ = RenderRequest(prompt="a cat says <S>hello<E> in the rain", width=160, height=96, seconds=1.0, steps=2,
                    precision="fp32", seed=5)


def test_layout_and_assignment() -> None:
    lay = ParallelLayout(4, 2)
    assert lay.ulysses_degree == 2
    assert [lay.cfg_index(r) for r in range(4)] == [0, 0, 1, 1]
    assert lay.ulysses_ranks(1) == [2, 3] and lay.cfg_ranks(1) == [1, 3]
    plan = [Branch.COND, Branch.NEG, Branch.NOALIGN]
    assert assign_branches(plan, 2) == [[Branch.COND, Branch.NOALIGN], [Branch.NEG]]
    assert assign_branches(plan, 4)[3] == []
    with pytest.raises(ValueError, match="must divide"):
        ParallelLayout(4, 3)


def _rank(rank: int, world: int, cfg_degree: int, port: int, weights: str, out: str) -> None:
    import torch.distributed as dist

    from nava_core.cfg_parallel import setup_groups
    from nava_core.ulysses import enable_ulysses
    from nava_core.pipeline import NAVAPipeline

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=120))
    ctx, runner = setup_groups(world, rank, cfg_degree)
    pipe = NAVAPipeline.from_pretrained(weights, device="cpu", precision="fp32")
    enable_ulysses(pipe.transformer, ctx)
    pipe.branch_runner = runner
    video, audio, forwards = pipe.denoise(REQ, pipe.encode_conditions(REQ))
    torch.save({"video": video, "audio": audio, "forwards": forwards}, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def _spawn(tmp_path: Path, world: int, cfg_degree: int, weights: Path) -> list[dict]:
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(r, world, cfg_degree, port, str(weights), str(tmp_path)))
             for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0, f"rank exited with {p.exitcode}"
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]


@pytest.fixture(scope="module")
def reference(tiny_weights):
    from nava_core.pipeline import NAVAPipeline

    torch.set_num_threads(1)
    pipe = NAVAPipeline.from_pretrained(tiny_weights, device="cpu", precision="fp32")
    video, audio, forwards = pipe.denoise(REQ, pipe.encode_conditions(REQ))
    return {"video": video, "audio": audio, "forwards": forwards}


def _check(ranks: list[dict], reference: dict) -> float:
    worst = 0.0
    for r in ranks:
        for m in ("video", "audio"):
            assert torch.equal(r[m], ranks[0][m])  # every rank ends with the same latents
            worst = max(worst, (r[m] - reference[m]).abs().max().item())
    assert worst <= 1e-4, worst
    return worst


@pytest.mark.slow
@pytest.mark.parametrize("world,cfg_degree", [(2, 2), (4, 2), (4, 4)], ids=["cfg2", "cfg2xulysses2", "cfg4"])
def test_cfg_parallel_equals_one_process(tmp_path, tiny_weights, reference, world: int, cfg_degree: int) -> None:
    ranks = _spawn(tmp_path, world, cfg_degree, tiny_weights)
    worst = _check(ranks, reference)
    print(f"CFG {cfg_degree} x Ulysses {world // cfg_degree}: max |latent diff| vs 1 process = {worst:.3g}")
    # each group runs only its share of the 3 branches (cond, neg, no-align): one forward per step and
    # branch group, and with 4 groups the 4th owns no branch and only receives
    assert all(r["forwards"] <= reference["forwards"] for r in ranks)
    if cfg_degree == 4:
        assert [r["forwards"] for r in ranks] == [REQ.steps, REQ.steps, REQ.steps, 0]
