"""Progress lines of ftjax's own loggers ('ftjax.*') on stderr, without the INFO chatter of the
libraries underneath (orbax, absl). Experiment modules call `show_progress`; in a notebook call it
once. Inside `labelled(...)` contexts every line names the run it belongs to:
`[3/24 plain/digits/symmetric_0.4/seed2] step 50/440 ...`."""

import contextlib
import contextvars
import logging
import sys
from typing import Iterator, TextIO

FORMAT = "%(asctime)s %(message)s"
LABEL_SEPARATOR = " › "

_labels: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("ftjax_progress_labels", default=())


@contextlib.contextmanager
def labelled(label: str) -> Iterator[None]:
  """While active (in this thread or task), progress lines read '[outer › label] message', the
  labels of enclosing contexts first."""
  token = _labels.set((*_labels.get(), label))
  try:
    yield
  finally:
    _labels.reset(token)


def current_label() -> str:
  """The labels of the active `labelled` contexts, outermost first, joined by ' › ' ('' outside any)."""
  return LABEL_SEPARATOR.join(_labels.get())


class LabelledFormatter(logging.Formatter):
  """A Formatter that puts '[current_label()] ' before each record's message (nothing outside a
  `labelled` context); the record itself is left unchanged for other handlers."""

  def formatMessage(self, record: logging.LogRecord) -> str:
    label = current_label()
    if label:
      record = logging.makeLogRecord({**record.__dict__, "message": f"[{label}] {record.message}"})
    return super().formatMessage(record)


def progress_handler(stream: TextIO) -> logging.Handler:
  """A handler writing records to `stream` as 'HH:MM:SS [label] message'."""
  handler = logging.StreamHandler(stream)
  handler.setFormatter(LabelledFormatter(FORMAT, datefmt="%H:%M:%S"))
  handler.ftjax_progress = True
  return handler


def show_progress(level: int = logging.INFO) -> None:
  """Prints records of the 'ftjax' logger tree at `level` and above to stderr (idempotent)."""
  logger = logging.getLogger("ftjax")
  logger.setLevel(level)
  if not any(getattr(h, "ftjax_progress", False) for h in logger.handlers):
    logger.addHandler(progress_handler(sys.stderr))
  logger.propagate = False
