"""Record the default audio+video path's latents on the tiny weights (tests/data/default_path/).

Run once, before a change that must not alter the default path; `tests/test_default_path.py` then
asserts the path still reproduces them. Usage: python scripts/record_default_path.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from default_path_cases import FIXTURE, requests  # noqa: E402

from nava_core.pipeline import NAVAPipeline  # noqa: E402
from nava_core.weights.tiny import build_tiny_weight_set  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pipe = NAVAPipeline.from_pretrained(build_tiny_weight_set(tmp / "tiny", seed=0), device="cpu")
        tensors = {}
        for name, req in requests(tmp).items():
            cond = pipe.encode_conditions(req)
            video, audio, _ = pipe.denoise(req, cond)
            tensors[f"{name}/video"] = video.contiguous()
            tensors[f"{name}/audio"] = audio.contiguous()
            if cond.first_frame is not None:
                tensors[f"{name}/first_frame"] = cond.first_frame.contiguous()
            if cond.speaker_embeddings is not None:
                tensors[f"{name}/speakers"] = cond.speaker_embeddings.contiguous()
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(FIXTURE))
        print(f"wrote {FIXTURE}: {sorted(tensors)}")


if __name__ == "__main__":
    main()
