"""Every test sees 8 simulated CPU devices, so data-parallel code runs as it would on 8 accelerators.

Compiled executables go to one persistent compilation cache for the whole session (a fresh
temporary folder, shared with the subprocesses the tests start), so the many tests that compile the
same small models' steps compile them once."""

import os
import shutil
import sys
import tempfile

os.environ["XLA_FLAGS"] = " ".join(
  [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE_DIR = tempfile.mkdtemp(prefix="ftjax-test-jax-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE_DIR
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  if "_CACHE_DIR" in globals():
    shutil.rmtree(_CACHE_DIR, ignore_errors=True)
