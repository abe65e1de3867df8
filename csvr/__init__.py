"""csvr: Collaboratively Self-supervised Video Representation learning, from raw videos to metrics."""

__version__ = "0.1.0"
