"""ftjax: robust fine-tuning of pretrained networks in JAX/Flax (see README and docs/)."""

__version__ = "0.1.0"
