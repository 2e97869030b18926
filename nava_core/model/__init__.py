"""NAVA backbone (`WanAVModel`): release key names, attention, RoPE, embeddings, precision policy."""

from .transformer import WanAVModel

__all__ = ["WanAVModel"]
