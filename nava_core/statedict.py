"""The one strict state-dict check every loader uses: missing, unexpected and mis-shaped keys in words.

Each loader raises its own error class (so the studio can say which file is wrong), but what counts
as a mismatch and how it is described is decided here once.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping


def _some(keys: list[str], limit: int) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def state_dict_problems(state: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]],
                        limit: int = 8) -> list[str]:
    """What differs between `state` (name -> tensor) and `expected` (name -> shape); [] when nothing."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(f"{k} {tuple(state[k].shape)} != {tuple(expected[k])}"
                   for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k]))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_some(missing, limit)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_some(unexpected, limit)}")
    if wrong:
        problems.append(f"{len(wrong)} keys with wrong shapes: {_some(wrong, limit)}")
    return problems


def require_state_dict(state: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], what: str,
                       error: Callable[[str], Exception] = ValueError) -> None:
    """Raise `error("<what>: a; b; c")` naming every kind of mismatch, or return when the keys and
    shapes match exactly. `what` says which file and which network, e.g. "x.pth is not a umT5 encoder"."""
    problems = state_dict_problems(state, expected)
    if problems:
        raise error(f"{what}: " + "; ".join(problems))


def expected_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Name -> shape of a module's state dict (works on the meta device)."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


__all__ = ["state_dict_problems", "require_state_dict", "expected_shapes"]
