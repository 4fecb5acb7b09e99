"""Builders: detect what a pushed tree is and turn it into an image.

Detection tries builders in DETECTION_ORDER (order is data, not registration order); an app matched
by none falls back to the last entry. A forced `builder:set APP selected NAME` skips detection.
"""

from __future__ import annotations

DETECTION_ORDER: tuple[str, ...] = ("dockerfile", "pack", "herokuish")

# The shipped buildpacks (builders/buildpacks/NAME), tried in this order when nothing chooses one:
# the first whose bin/detect accepts the app builds it (herokuish tries its buildpacks the same way).
BUILDPACK_ORDER: tuple[str, ...] = ("python", "nodejs", "static", "procfile")
