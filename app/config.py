"""Service settings: the one settings model of the CLI and the service (:mod:`vggish.settings`),
read from ``VGGISH_*`` environment variables."""

from __future__ import annotations

from vggish.settings import MIB, Settings, load_settings

__all__ = ["MIB", "Settings", "load_settings"]
