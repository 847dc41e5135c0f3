"""Progress lines of ftjax's own loggers ('ftjax.*') on stderr, without the INFO chatter of the
libraries underneath (orbax, absl). Experiment modules call it; in a notebook call it once."""

import logging
import sys

FORMAT = "%(asctime)s %(message)s"


def show_progress(level: int = logging.INFO) -> None:
  """Prints records of the 'ftjax' logger tree at `level` and above to stderr (idempotent)."""
  logger = logging.getLogger("ftjax")
  logger.setLevel(level)
  if not any(getattr(h, "ftjax_progress", False) for h in logger.handlers):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
    handler.ftjax_progress = True
    logger.addHandler(handler)
  logger.propagate = False
