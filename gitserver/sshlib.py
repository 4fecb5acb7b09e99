"""asyncssh, imported through this one module so that its one known noise is filtered before it loads.

asyncssh (2.24) still names and parses DSA keys through cryptography's DSA API, which cryptography 48+ marks
deprecated: importing asyncssh, or parsing a DSA key (which pushdock then refuses), prints
`CryptographyDeprecationWarning: DSA is deprecated` on stderr. A successful command prints nothing on stderr, so
exactly that warning, raised from asyncssh's own modules, is ignored; any other warning still shows.
"""

from __future__ import annotations

import warnings

from cryptography.utils import CryptographyDeprecationWarning

warnings.filterwarnings("ignore", message="DSA is deprecated", category=CryptographyDeprecationWarning,
                        module=r"asyncssh\.")

import asyncssh  # noqa: E402  (after the filter, on purpose)

__all__ = ["asyncssh"]
