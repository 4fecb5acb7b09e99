"""Builders: detect what a pushed tree is and turn it into an image.

Detection asks each registered builder's `detect()` in DETECTION_ORDER (pushdock/builder.py: order is data,
not registration order); herokuish, last, takes every tree. A forced `builder:set APP selected NAME` skips it.
"""

from __future__ import annotations

# The shipped buildpacks (builders/buildpacks/NAME), tried in this order when nothing chooses one:
# the first whose bin/detect accepts the app builds it (herokuish tries its buildpacks the same way).
BUILDPACK_ORDER: tuple[str, ...] = ("python", "nodejs", "static", "procfile")
