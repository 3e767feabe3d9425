"""Model Shelf's core: no ComfyUI imports here, ever. Start from `Shelf`."""

from .errors import ShelfError
from .imports import HashTiming, ImportMode
from .index import SortOrder
from .records import ModelRecord
from .shelf import Shelf

__all__ = ["HashTiming", "ImportMode", "ModelRecord", "Shelf", "ShelfError", "SortOrder"]
