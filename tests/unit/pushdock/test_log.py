"""pushdock.log: configuring costs no loguru import; whoever imports loguru or logging later gets it configured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
from pathlib import Path
from pushdock import log
log.configure("INFO", Path(sys.argv[1]), stderr=False, extra={"who": "tester"})
assert "loguru" not in sys.modules
import logging
logging.getLogger("dulwich").warning("from stdlib %s", 1)
from loguru import logger
logger.info("direct import", app="web")
log.logger.debug("through the proxy")
"""


def test_configure_applies_when_loguru_is_first_imported(tmp_path: Path) -> None:
    logfile = tmp_path / "logs" / "pushdock.log"
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(logfile)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""  # the default stderr sink was removed
    lines = logfile.read_text().splitlines()
    assert len(lines) == 3
    assert "WARNING" in lines[0] and "from stdlib 1" in lines[0] and "'who': 'tester'" in lines[0]
    assert "direct import" in lines[1] and "'app': 'web'" in lines[1]
    assert "DEBUG" in lines[2] and "through the proxy" in lines[2]


def test_apps_list_does_not_import_loguru(tmp_path: Path) -> None:
    probe = ("import sys; sys.argv = ['pushdock', 'apps:list']\n"
             "from pushdock.cli import main\n"
             "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
             "assert 'loguru' not in sys.modules and 'docker' not in sys.modules and 'pluggy' not in sys.modules\n")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PUSHDOCK_DATA_DIR": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    assert res.stdout == "=====> My Apps\n"
