"""Render request files with every rank of a torchrun launch (multi-node, or externally launched):

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m nava_core.torchrun --weights /models/NAVA --out renders/ request1.json request2.json

All ranks denoise together (`nava_core.ulysses`); rank 0 writes the outputs with the same writer as
every other render (`nava_core.render.render_to_files`). See docs/multi_gpu.md.
"""

from __future__ import annotations

import argparse
import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Render request files with all ranks of a torchrun launch; rank 0 writes the outputs."""
    import torch
    import torch.distributed as dist

    from nava_core.render import render_to_files
    from nava_core.request import RenderRequest
    from nava_core.ulysses import SyncedCancel, UlyssesContext, load_parallel_pipeline

    p = argparse.ArgumentParser(prog="python -m nava_core.torchrun", description=__doc__.split("\n")[0])
    p.add_argument("requests", nargs="+", help="render request JSON files")
    p.add_argument("--weights", required=True)
    p.add_argument("--out", default="renders")
    p.add_argument("--precision", default="nava", choices=["nava", "fp32"])
    p.add_argument("--memory-profile", default="auto")
    p.add_argument("--timeout", type=float, default=600.0, help="collective timeout in seconds")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=args.timeout))
    rank, world = dist.get_rank(), dist.get_world_size()
    pipe = load_parallel_pipeline(args.weights, device, args.precision, args.memory_profile,
                                  UlyssesContext(world, rank))
    for path in args.requests:
        box = [Path(path).read_text(encoding="utf-8") if rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        request = RenderRequest.from_json(box[0])
        cancel = SyncedCancel(None, device)
        if rank == 0:
            outs = render_to_files(pipe, request, args.out, cancel=cancel)
            print(outs.mp4 or outs.wav, flush=True)
        else:
            pipe(request, cancel=cancel)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
