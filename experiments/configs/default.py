"""The default run: fine-tune the shipped Fashion-MNIST ResNet-18 on scikit-learn's digits.

Every field is declared, with its default and meaning, in ftjax/configs/schema.py (docs/config.md
lists them); other configs start from this one.
"""

import ml_collections

from ftjax import configs


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  return configs.default_config()
