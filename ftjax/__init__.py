"""ftjax: robust fine-tuning of pretrained networks in JAX/Flax (see README and SPEC)."""

__version__ = "0.1.0"
