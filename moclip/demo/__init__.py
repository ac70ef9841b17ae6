"""A small deterministic synthetic demo corpus: motion-only and appearance-only classes (data/README.md)."""

from moclip.demo.synth import (
    DEMO_CLASSES,
    DEMO_CORPUS_VERSION,
    ENCODE_VARIANTS,
    STAMP_NAME,
    ClipSpec,
    DemoClass,
    EncodeVariant,
    generate_demo_corpus,
    plan_demo_corpus,
    read_stamp,
)

__all__ = [
    "DEMO_CLASSES", "DEMO_CORPUS_VERSION", "ENCODE_VARIANTS", "STAMP_NAME", "ClipSpec", "DemoClass",
    "EncodeVariant", "generate_demo_corpus", "plan_demo_corpus", "read_stamp",
]
