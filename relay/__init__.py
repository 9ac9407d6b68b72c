"""orca-relay: an OpenAI-compatible enforcement gateway."""

__version__ = "0.1.0"
