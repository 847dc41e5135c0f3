"""A tiny TFDS dataset, 'ftjax_tiny_images', prepared as array_record (no TensorFlow needed)."""

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
