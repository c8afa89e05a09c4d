"""Functions "added in the new release" of the rolling-deploy tests (tests/db/test_deploys.py).

A worker started with ``TEST_OLD_RELEASE=1`` runs the previous release: this app is not installed there
(tests/settings.py) and cannot be imported at all, as if its code were not deployed yet, so its functions
and its task are unknown to that worker.
"""

import os

if os.environ.get("TEST_OLD_RELEASE") == "1":
    raise ImportError("tests.release2 is not part of the previous release")
