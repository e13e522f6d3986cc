"""Training data, host-free: `[data]` config, video discovery and reading, the encoded cache, the dataset."""
from .config import DataConfig

__all__ = ["DataConfig"]
