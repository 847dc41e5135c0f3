"""Tiny TFDS datasets, 'ftjax_tiny_images' and 'ftjax_tiny_glue/mrpc', prepared as array_record (no TensorFlow
needed)."""

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image


class FtjaxTinyImages(tfds.core.GeneratorBasedBuilder):
  """Train example i: a (5 + i) x 6 RGB image filled with 10 * i, label i % 3; test: 4 examples."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          "picture": tfds.features.Image(shape=(None, None, 3)),
          "label": tfds.features.ClassLabel(names=["x", "y", "z"]),
        }
      ),
    )

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(10), "test": self._generate_examples(4)}

  def _generate_examples(self, num_examples):
    for i in range(num_examples):
      yield i, {"picture": Image.new("RGB", (6, 5 + i), (10 * i,) * 3), "label": i % 3}


def prepare(data_dir: str) -> str:
  """`data_dir`, now holding ftjax_tiny_images."""
  FtjaxTinyImages(data_dir=data_dir).download_and_prepare(file_format="array_record")
  return data_dir


class FtjaxTinyGlue(tfds.core.GeneratorBasedBuilder):
  """GLUE's shape (config 'mrpc': 'sentence1', 'sentence2', 'label' of two classes, 'idx'; test labels -1):
  train example i is ('first i', 'second i ü'), label i % 2; validation: 4 examples; test: 3, unlabelled."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="mrpc")]

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          "sentence1": tfds.features.Text(),
          "sentence2": tfds.features.Text(),
          "label": tfds.features.ClassLabel(names=["not_equivalent", "equivalent"]),
          "idx": tfds.features.Scalar(dtype=np.int32),
        }
      ),
    )

  def _split_generators(self, dl_manager):
    return {
      "train": self._generate_examples(10, labelled=True),
      "validation": self._generate_examples(4, labelled=True),
      "test": self._generate_examples(3, labelled=False),
    }

  def _generate_examples(self, num_examples, labelled):
    for i in range(num_examples):
      yield i, {"sentence1": f"first {i}", "sentence2": f"second {i} ü", "label": i % 2 if labelled else -1, "idx": i}


def prepare_glue(data_dir: str) -> str:
  """`data_dir`, now holding ftjax_tiny_glue/mrpc."""
  FtjaxTinyGlue(config="mrpc", data_dir=data_dir).download_and_prepare(file_format="array_record")
  return data_dir
