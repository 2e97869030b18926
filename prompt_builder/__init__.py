"""NAVA prompt builder: structured project -> dense prompt with `<S>...<E>` spans, voices in span order.

Pure Python (no torch); the optional enhancer imports transformers lazily.
"""

from .compiler import CompiledPrompt, compile_project
from .parser import parse_prompt
from .schema import (
    LANGUAGES,
    MODES,
    PROJECT_VERSION,
    RATES,
    AudioDesign,
    Beat,
    Camera,
    CastMember,
    Delivery,
    Project,
    Scene,
    SchemaError,
    Subject,
)

__all__ = [
    "AudioDesign", "Beat", "Camera", "CastMember", "CompiledPrompt", "Delivery", "LANGUAGES", "MODES",
    "PROJECT_VERSION", "Project", "RATES", "Scene", "SchemaError", "Subject", "compile_project",
    "parse_prompt",
]
