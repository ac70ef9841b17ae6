"""moclip: compressed-domain motion vectors + frozen CLIP for action recognition."""

__version__ = "0.1.0"
