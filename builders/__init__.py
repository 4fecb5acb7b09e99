"""Builders: detect what a pushed tree is and turn it into an image.

Detection tries builders in DETECTION_ORDER (order is data, not registration order); an app matched
by none falls back to the last entry. A forced `builder:set APP selected NAME` skips detection.
"""

from __future__ import annotations

DETECTION_ORDER: tuple[str, ...] = ("dockerfile", "pack", "herokuish")
