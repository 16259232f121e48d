"""NumPy 2 is refused at import, before Jittor loads: Jittor 1.3.11 returns wrong values under it.

Runs in any environment: under NumPy 1.x the version is faked in a subprocess; in a NumPy 2
environment (README, "NumPy 2") the real one is used. Imports nothing of jsegnext here (that is
what is being tested), so it needs no Jittor compile."""
import subprocess
import sys

import numpy as np
from conftest import ROOT

PROBE = """
import sys
import numpy
if sys.argv[1]:
    numpy.__version__ = sys.argv[1]
try:
    import jsegnext
except ImportError as err:
    print(err)
    sys.exit(3 if "jittor" in sys.modules else 2)
sys.exit(0)
"""


def import_jsegnext(fake_numpy_version=""):
    return subprocess.run([sys.executable, "-c", PROBE, fake_numpy_version], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_numpy_2_is_refused_in_one_line_before_jittor_loads():
    real_2 = int(np.__version__.split(".")[0]) >= 2
    version = np.__version__ if real_2 else "2.1.0"
    result = import_jsegnext("" if real_2 else version)
    assert result.returncode == 2, result.stdout + result.stderr  # refused, and Jittor never imported
    message = result.stdout.strip()
    assert "\n" not in message and f"NumPy {version}" in message and "pip install 'numpy<2'" in message

