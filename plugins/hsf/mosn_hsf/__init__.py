"""mosn's HSF plugin: a documented stub (HSF's wire format is not public)."""

from mosn_hsf.config import NOT_PUBLIC, HsfConfig

__all__ = ["NOT_PUBLIC", "HsfConfig"]
