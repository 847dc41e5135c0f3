"""Methods by the config's `method` name. A new method adds a module and one entry here."""

from typing import Callable

from ftjax.methods.base import Method, MethodContext, cross_entropy_loss


def plain_finetuning(context: MethodContext) -> Method:
  """Plain fine-tuning: cross-entropy on the given labels, no regularisation."""
  del context
  return Method(name="none", loss=cross_entropy_loss)


METHODS: dict[str, Callable[[MethodContext], Method]] = {
    "none": plain_finetuning,
}


def check_method_name(name: str) -> None:
  if name not in METHODS:
    raise ValueError(f"method={name!r} is not a known method; valid: {', '.join(METHODS)}")


def build_method(context: MethodContext) -> Method:
  """The `Method` that `context.config.method` names."""
  check_method_name(context.config.method)
  return METHODS[context.config.method](context)
