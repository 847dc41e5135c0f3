"""ftjax.data: sources and loaders, preprocessing, deterministic sharded batches."""

import dataclasses
import gzip
import importlib.util
import json
import os
import shutil
import struct

import chex
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from ftjax import data
from ftjax.data import preprocessing, sources
from tests import tiny_tfds


def one_line_error(excinfo, *fragments):
  message = str(excinfo.value)
  assert "\n" not in message, message
  for fragment in fragments:
    assert fragment in message, (fragment, message)


def write_idx(path, array):
  """An IDX file: zero, dtype code, ndim, big-endian dims, big-endian data (gzip when .gz)."""
  codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}
  payload = struct.pack(">HBB", 0, codes[array.dtype], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
  payload += array.astype(array.dtype.newbyteorder(">")).tobytes()
  with (gzip.open if path.endswith(".gz") else open)(path, "wb") as f:
    f.write(payload)


def index_source(num_examples, size=4, num_classes=3):
  """Image i is filled with i (so a batch's images name its examples); label i % num_classes."""
  pixels = np.broadcast_to(
    np.arange(num_examples, dtype=np.uint8)[:, None, None, None], (num_examples, size, size, 1)
  ).copy()
  labels = (np.arange(num_examples) % num_classes).astype(np.int32)
  return data.ArraySource(pixels, labels, [str(c) for c in range(num_classes)])


def random_source(num_examples, size=6, channels=3, seed=0):
  rng = np.random.default_rng(seed)
  pixels = rng.integers(0, 256, (num_examples, size, size, channels), dtype=np.uint8)
  return data.ArraySource(pixels, rng.integers(0, 5, num_examples).astype(np.int32), list("abcde"))


def test_digits_split_is_stratified_ordered_and_covers_every_example():
  reference = load_digits()
  expected = np.round(reference.images * 255 / 16).astype(np.uint8)
  position = {image.tobytes(): i for i, image in enumerate(expected)}  # all 1797 images are distinct
  splits = data.load_dataset("digits")
  assert (len(splits.train), len(splits.test)) == (1437, 360)
  assert splits.train.images(np.arange(3)).shape == (3, 8, 8, 1)
  found = {}
  for name, split in splits._asdict().items():
    found[name] = np.array([position[image[..., 0].tobytes()] for image in split.images(np.arange(len(split)))])
    np.testing.assert_array_equal(split.labels, reference.target[found[name]])
    assert np.all(np.diff(found[name]) > 0)  # original order kept, so indices are stable
  np.testing.assert_array_equal(np.sort(np.concatenate(list(found.values()))), np.arange(1797))
  class_sizes = np.bincount(reference.target)
  assert np.all(np.abs(np.bincount(splits.test.labels) - 0.2 * class_sizes) <= 1)
  again = data.load_dataset("digits", seed=7)  # the split never depends on the run seed
  np.testing.assert_array_equal(again.train.pixels, splits.train.pixels)
  assert splits.train.num_classes == 10 and splits.train.labels.dtype == np.int32


def test_examples_per_class_keeps_a_seeded_subset_reindexed():
  full = data.load_dataset("digits").train
  few = data.load_dataset("digits", examples_per_class=5, seed=1)
  assert len(few.train) == 50 and len(few.test) == 360
  np.testing.assert_array_equal(np.bincount(few.train.labels), np.full(10, 5))
  rows = {image.tobytes(): i for i, image in enumerate(full.pixels)}
  kept = np.array([rows[image.tobytes()] for image in few.train.images(np.arange(50))])
  assert np.all(np.diff(kept) > 0)
  np.testing.assert_array_equal(few.train.labels, full.labels[kept])
  same = data.load_dataset("digits", examples_per_class=5, seed=1).train
  other = data.load_dataset("digits", examples_per_class=5, seed=2).train
  np.testing.assert_array_equal(same.pixels, few.train.pixels)
  assert not np.array_equal(other.pixels, few.train.pixels)


def test_labels_can_be_replaced():
  source = index_source(6)
  noisy = source.labels[::-1].copy()
  replaced = dataclasses.replace(source, labels=noisy)
  np.testing.assert_array_equal(replaced.labels, noisy)
  np.testing.assert_array_equal(replaced.images(np.arange(6)), source.pixels)
  assert replaced.num_classes == 3 and len(replaced) == 6


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_reader_against_files_written_with_struct(tmp_path, suffix):
  rng = np.random.default_rng(0)
  arrays = {
    "train-images-idx3-ubyte": rng.integers(0, 256, (5, 3, 4), dtype=np.uint8),
    "train-labels-idx1-ubyte": np.array([3, 1, 4, 1, 5], np.uint8),
    "t10k-images-idx3-ubyte": rng.integers(0, 256, (2, 3, 4), dtype=np.uint8),
    "t10k-labels-idx1-ubyte": np.array([9, 2], np.uint8),
  }
  for stem, array in arrays.items():
    write_idx(str(tmp_path / (stem + suffix)), array)
  splits = data.load_dataset("mnist", str(tmp_path))
  np.testing.assert_array_equal(splits.train.pixels, arrays["train-images-idx3-ubyte"][..., None])
  np.testing.assert_array_equal(splits.train.labels, [3, 1, 4, 1, 5])
  np.testing.assert_array_equal(splits.test.images(np.array([1, 0])), arrays["t10k-images-idx3-ubyte"][::-1, ..., None])
  assert splits.test.labels.dtype == np.int32 and splits.train.class_names == [str(d) for d in range(10)]
  wide = np.array([[1, -2], [70000, 3]], np.int32)
  write_idx(str(tmp_path / "wide.idx"), wide)
  np.testing.assert_array_equal(data.read_idx(str(tmp_path / "wide.idx")), wide)


@pytest.mark.skipif(not os.path.isdir(sources.FASHION_MNIST_DIR), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
  splits = data.load_dataset("fashion_mnist")
  assert (len(splits.train), len(splits.test)) == (60000, 10000)
  assert splits.train.pixels.shape == (60000, 28, 28, 1) and splits.train.pixels.dtype == np.uint8
  np.testing.assert_array_equal(np.bincount(splits.train.labels), np.full(10, 6000))
  np.testing.assert_array_equal(np.bincount(splits.test.labels), np.full(10, 1000))
  assert splits.train.class_names[0] == "T-shirt/top" and splits.train.num_classes == 10


def test_missing_idx_files_raise_one_line(tmp_path):
  with pytest.raises(FileNotFoundError) as excinfo:
    data.load_dataset("fashion_mnist", str(tmp_path))
  one_line_error(excinfo, str(tmp_path), "train-images-idx3-ubyte", "apt-get install dataset-fashion-mnist")
  with pytest.raises(FileNotFoundError) as excinfo:
    data.check_dataset("mnist", str(tmp_path / "nowhere"))
  one_line_error(excinfo, str(tmp_path / "nowhere"), "data_dir")


COLOURS = {"b_zebra": (200, 10, 30), "a_cat": (0, 120, 250), "c_owl": (90, 90, 0)}


def write_class_folders(root, counts):
  for class_name, count in counts.items():
    os.makedirs(root / class_name)
    for i in range(count):
      Image.new("RGB", (5 + i, 7), COLOURS.get(class_name, (9, 9, 9))).save(root / class_name / f"{i:02d}.png")


def test_image_folder_split_by_fraction(tmp_path):
  write_class_folders(tmp_path, {"b_zebra": 10, "a_cat": 5, "c_owl": 1})
  (tmp_path / "a_cat" / "notes.txt").write_text("not an image")
  data.check_dataset("image_folder", str(tmp_path))
  splits = data.load_dataset("image_folder", str(tmp_path), image_size=6, test_fraction=0.3)
  assert splits.train.class_names == ["a_cat", "b_zebra", "c_owl"] == splits.test.class_names
  np.testing.assert_array_equal(np.bincount(splits.test.labels, minlength=3), [2, 3, 0])  # round(0.3 n)
  np.testing.assert_array_equal(np.bincount(splits.train.labels, minlength=3), [3, 7, 1])
  for split in splits:
    images = split.images(np.arange(len(split)))
    assert images.shape == (len(split), 6, 6, 3)
    expected = np.array([COLOURS[split.class_names[label]] for label in split.labels], np.uint8)
    np.testing.assert_array_equal(images, np.broadcast_to(expected[:, None, None, :], images.shape))
  files = sorted(str(p) for p in tmp_path.glob("*/*.png"))
  assert sorted(np.concatenate([splits.train.paths, splits.test.paths])) == files
  again = data.load_dataset("image_folder", str(tmp_path), image_size=6, test_fraction=0.3, seed=3)
  np.testing.assert_array_equal(again.test.paths, splits.test.paths)
  gray = data.load_dataset("image_folder", str(tmp_path), image_size=3, grayscale=True).train
  r, g, b = COLOURS["a_cat"]
  pil_luminance = round((r * 299 + g * 587 + b * 114) / 1000)  # PIL's documented RGB -> L formula
  np.testing.assert_array_equal(gray.images(np.array([0])), np.full((1, 3, 3, 1), pil_luminance))


def test_image_folder_uses_train_and_test_subfolders(tmp_path):
  write_class_folders(tmp_path / "train", {"b_zebra": 3, "a_cat": 2})
  write_class_folders(tmp_path / "test", {"b_zebra": 1})
  splits = data.load_dataset("image_folder", str(tmp_path), image_size=4)
  assert splits.train.class_names == ["a_cat", "b_zebra"] == splits.test.class_names
  np.testing.assert_array_equal(splits.train.labels, [0, 0, 1, 1, 1])
  np.testing.assert_array_equal(splits.test.labels, [1])
  assert splits.test.images(np.array([0])).shape == (1, 4, 4, 3)
  noisy = dataclasses.replace(splits.train, labels=np.zeros(5, np.int32))
  np.testing.assert_array_equal(noisy.take(np.array([4])).labels, [0])


def test_image_folder_reads_a_named_validation_subfolder(tmp_path):
  write_class_folders(tmp_path / "train", {"b_zebra": 3, "a_cat": 2})
  write_class_folders(tmp_path / "test", {"b_zebra": 1})
  write_class_folders(tmp_path / "val", {"b_zebra": 2, "a_cat": 1})
  names = ("train", "test", "val")
  data.check_dataset("image_folder", str(tmp_path), splits=names)
  splits = data.load_dataset("image_folder", str(tmp_path), image_size=4, splits=names)
  assert isinstance(splits, data.SplitsWithValidation) and splits.validation.class_names == ["a_cat", "b_zebra"]
  np.testing.assert_array_equal(splits.validation.labels, [0, 1, 1])
  assert sorted(splits.validation.paths) == sorted(str(p) for p in (tmp_path / "val").glob("*/*.png"))
  images = splits.validation.images(np.arange(3))
  expected = np.array([COLOURS[splits.validation.class_names[label]] for label in splits.validation.labels], np.uint8)
  np.testing.assert_array_equal(images, np.broadcast_to(expected[:, None, None, :], images.shape))
  two = data.load_dataset("image_folder", str(tmp_path), image_size=4)  # two names: val/ is not read
  assert isinstance(two, data.Splits) and np.array_equal(two.train.paths, splits.train.paths)


@pytest.mark.parametrize(
  "layout,problem",
  [
    ({"train": {"a": 2, "b": 2}, "test": {"a": 1}}, "has no val/"),
    ({"a": 3, "b": 3}, "has no train/, test/, val/"),
    ({"train": {"a": 2, "b": 2}, "test": {"a": 1}, "val": {"c": 1}}, "has classes missing from"),
  ],
)
def test_an_image_folder_validation_split_that_is_not_there_is_one_line(tmp_path, layout, problem):
  for name, counts in layout.items():
    if isinstance(counts, dict):
      write_class_folders(tmp_path / name, counts)
    else:
      write_class_folders(tmp_path, {name: counts})
  for call in (data.check_dataset, data.load_dataset):
    with pytest.raises((ValueError, FileNotFoundError)) as excinfo:
      call(
        "image_folder",
        str(tmp_path),
        splits=("train", "test", "val"),
        **({"image_size": 4} if call is data.load_dataset else {}),
      )
    one_line_error(excinfo, problem)


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  return tiny_tfds.prepare(str(tmp_path_factory.mktemp("tfds")))


def test_tfds_array_record_random_access(tfds_dir):
  data.check_dataset("tfds:ftjax_tiny_images", tfds_dir)
  splits = data.load_dataset("tfds:ftjax_tiny_images", tfds_dir, image_size=4, image_key="picture")
  assert (len(splits.train), len(splits.test)) == (10, 4)
  assert splits.train.class_names == ["x", "y", "z"]
  images = splits.train.images(np.arange(10))
  assert images.shape == (10, 4, 4, 3) and images.dtype == np.uint8
  fills = images[:, 0, 0, 0].astype(int)
  np.testing.assert_array_equal(images, np.broadcast_to(fills[:, None, None, None], images.shape))
  np.testing.assert_array_equal(np.sort(fills), 10 * np.arange(10))
  np.testing.assert_array_equal(splits.train.labels, (fills // 10) % 3)  # labels belong to their images
  np.testing.assert_array_equal(splits.train.images(np.array([7, 2])), images[[7, 2]])
  few = data.load_dataset(
    "tfds:ftjax_tiny_images",
    tfds_dir,
    image_size=4,
    image_key="picture",
    examples_per_class=2,
    seed=0,
    splits=("train", "test[:2]"),
  )
  np.testing.assert_array_equal(np.bincount(few.train.labels), [2, 2, 2])
  assert len(few.test) == 2
  kept = few.train.images(np.arange(6))[:, 0, 0, 0]
  np.testing.assert_array_equal(few.train.labels, (kept // 10) % 3)


def test_tfds_errors(tfds_dir, tmp_path):
  with pytest.raises(ValueError) as excinfo:
    data.load_dataset("tfds:ftjax_tiny_images", tfds_dir, image_key="picture")
  one_line_error(excinfo, "image_size")
  with pytest.raises(ValueError) as excinfo:
    data.load_dataset("tfds:ftjax_tiny_images", tfds_dir, image_size=4)
  one_line_error(excinfo, "'image'", "picture")
  with pytest.raises(FileNotFoundError) as excinfo:
    data.check_dataset("tfds:no_such_dataset_here", str(tmp_path))
  one_line_error(excinfo, "no_such_dataset_here", str(tmp_path))
  with pytest.raises(FileNotFoundError) as excinfo:
    data.load_dataset("tfds:mnist", str(tmp_path), image_size=4)  # registered but not prepared
  one_line_error(excinfo, "'mnist'", str(tmp_path))


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None, reason="TensorFlow can read tfrecord")
def test_tfds_tfrecord_without_tensorflow_names_what_is_needed(tfds_dir, tmp_path):
  shutil.copytree(tfds_dir, tmp_path, dirs_exist_ok=True)
  info_path = tmp_path / "ftjax_tiny_images" / "1.0.0" / "dataset_info.json"
  info = json.loads(info_path.read_text())
  info_path.write_text(json.dumps({**info, "fileFormat": "tfrecord"}))
  for call in (
    lambda: data.check_dataset("tfds:ftjax_tiny_images", str(tmp_path)),
    lambda: data.load_dataset("tfds:ftjax_tiny_images", str(tmp_path), image_size=4),
  ):
    with pytest.raises(ImportError) as excinfo:
      call()
    one_line_error(excinfo, "'ftjax_tiny_images'", "tfrecord", "tensorflow-cpu", "file_format=array_record")


def test_bad_dataset_names_and_paths(tmp_path):
  for name in ("cifar", "tfds:", "tfds", "Digits"):
    with pytest.raises(ValueError) as excinfo:
      data.check_dataset(name)
    one_line_error(excinfo, repr(name), "digits", "fashion_mnist", "image_folder", "tfds:NAME")
  assert tuple(data.DATASETS) == (
    "digits",
    "fashion_mnist",
    "mnist",
    "image_folder",
    "wordnet_nouns",
    "wordnet_verbs",
    "text_files",
  )
  with pytest.raises(FileNotFoundError) as excinfo:
    data.check_dataset("image_folder", str(tmp_path / "missing"))
  one_line_error(excinfo, str(tmp_path / "missing"))
  with pytest.raises(ValueError) as excinfo:
    data.load_dataset("image_folder", str(tmp_path))
  one_line_error(excinfo, "image_size")


def test_image_folders_that_cannot_train_are_refused_in_one_line(tmp_path):
  layouts = {
    "empty_class": ({"a": 3, "b": 3, "c": 0}, 0.2, "class folder 'c' holds no images"),
    "single_class": ({"a": 3}, 0.2, "has a single class ('a')"),
    "no_images": ({"a": 0, "b": 0}, 0.2, "holds no images in its class sub-folders"),
    "all_held_out": ({"a": 1, "b": 3}, 0.6, "class 'a' has no training images once test_fraction=0.6 of its 1"),
    "none_held_out": ({"a": 1, "b": 1}, 0.2, "test_fraction=0.2 holds out no image of any class"),
    "empty_train_class": ({"train/a": 2, "train/b": 0, "test/a": 1}, 0.2, "class folder 'b' holds no images"),
  }
  for name, (counts, test_fraction, fragment) in layouts.items():
    write_class_folders(tmp_path / name, counts)
    for call in (data.check_dataset, data.load_dataset):
      kwargs = {"image_size": 4} if call is data.load_dataset else {}
      with pytest.raises(ValueError) as excinfo:
        call("image_folder", str(tmp_path / name), test_fraction=test_fraction, **kwargs)
      one_line_error(excinfo, fragment)


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n" + b"x" * 40, b"GIF89a garbage"])
def test_an_image_that_does_not_decode_is_named_when_the_folder_is_opened(tmp_path, content):
  write_class_folders(tmp_path, {"a": 2, "b": 2})
  (tmp_path / "b" / "bad.png").write_bytes(content)
  for call in (data.check_dataset, data.load_dataset):
    with pytest.raises(ValueError) as excinfo:
      call("image_folder", str(tmp_path), **({"image_size": 4} if call is data.load_dataset else {}))
    one_line_error(excinfo, f"image file {str(tmp_path / 'b' / 'bad.png')!r} cannot be decoded")
  (tmp_path / "b" / "bad.png").unlink()
  assert len(data.load_dataset("image_folder", str(tmp_path), image_size=4, test_fraction=0.5).train) == 2


def test_data_dir_that_is_a_file_and_truncated_idx_files_are_named(tmp_path):
  file = tmp_path / "file"
  file.write_text("x")
  for name in ("image_folder", "mnist", "fashion_mnist"):
    with pytest.raises(ValueError) as excinfo:
      data.check_dataset(name, str(file))
    one_line_error(excinfo, f"data_dir={str(file)!r} is a file, not a directory")
  images = np.arange(10 * 28 * 28, dtype=np.int32).astype(np.uint8).reshape(10, 28, 28)
  for stem, array in zip(sources.IDX_FILES, (images, np.arange(10, dtype=np.uint8)) * 2):
    write_idx(str(tmp_path / stem), array)
  data.check_dataset("mnist", str(tmp_path))
  whole = (tmp_path / sources.IDX_FILES[0]).read_bytes()
  (tmp_path / sources.IDX_FILES[0]).write_bytes(whole[:-1])
  for call in (lambda: data.check_dataset("mnist", str(tmp_path)), lambda: data.load_dataset("mnist", str(tmp_path))):
    with pytest.raises(ValueError) as excinfo:
      call()
    one_line_error(excinfo, f"{tmp_path / sources.IDX_FILES[0]} is truncated: {len(whole) - 1} bytes", str(len(whole)))


def test_unparsable_tfds_names_are_one_line(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  for name in ("tfds: ", "tfds:a b", "tfds:/x"):
    with pytest.raises(ValueError) as excinfo:
      data.check_dataset(name, str(tmp_path))
    one_line_error(excinfo, f"dataset={name!r} does not name a tfds dataset")


def test_a_training_split_without_some_class_or_with_one_class_is_refused():
  import ml_collections

  from ftjax.config_validation import ConfigError
  from ftjax.train.experiment import check_every_class_trains

  config = ml_collections.ConfigDict({"data": {"name": "toy", "dir": ""}})
  check_every_class_trains(config, index_source(6, num_classes=3))
  missing = index_source(6, num_classes=3).take(np.array([0, 2, 3, 5]))  # labels 0, 2, 0, 2
  with pytest.raises(ConfigError) as excinfo:
    check_every_class_trains(config, missing)
  one_line_error(excinfo, "dataset 'toy': class '1' has no training examples (1 such class(es)", "4 examples")
  with pytest.raises(ConfigError) as excinfo:
    check_every_class_trains(config, index_source(4, num_classes=1))
  one_line_error(excinfo, "dataset 'toy' has 1 class(es), nothing to classify")


def test_resize_and_channels():
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (2, 9, 7, 3), dtype=np.uint8)
  out = preprocessing.fit_images(rgb, data.Preprocess(image_size=5, channels=3))
  assert out.shape == (2, 5, 5, 3) and out.dtype == np.uint8
  reference = np.asarray(Image.fromarray(rgb[1]).resize((5, 5), Image.BILINEAR))  # PIL's own RGB resize
  np.testing.assert_array_equal(out[1], reference)
  gray = rng.integers(0, 256, (2, 4, 4, 1), dtype=np.uint8)
  replicated = data.preprocess(gray, data.Preprocess(channels=3))
  assert replicated.shape == (2, 4, 4, 3)
  for c in range(3):
    np.testing.assert_array_equal(replicated[..., c], gray[..., 0] / np.float32(255))
  luminance = preprocessing.fit_images(rgb, data.Preprocess(channels=1))
  r, g, b = (rgb[..., c].astype(float) for c in range(3))
  np.testing.assert_array_equal(luminance[..., 0], np.round(0.299 * r + 0.587 * g + 0.114 * b))
  np.testing.assert_array_equal(preprocessing.fit_images(out, data.Preprocess(image_size=5)), out)  # idempotent


def test_normalisation_formula():
  images = np.random.default_rng(1).integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
  config = data.Preprocess(mean=data.IMAGENET_MEAN, std=data.IMAGENET_STD)
  out = data.preprocess(images, config)
  assert out.dtype == np.float32 and out.shape == (3, 4, 4, 3)
  for c in range(3):
    expected = (images[..., c] / 255.0 - data.IMAGENET_MEAN[c]) / data.IMAGENET_STD[c]
    np.testing.assert_allclose(out[..., c], expected, rtol=1e-5, atol=1e-6)


def test_crop_and_flip_invariants():
  images = np.random.default_rng(2).random((4, 5, 5, 3)).astype(np.float32)
  flip_all = data.Augmentation(np.zeros((4, 2), int), np.ones(4, bool))
  flipped = preprocessing.augment(images, 0, flip_all)
  np.testing.assert_array_equal(preprocessing.augment(flipped, 0, flip_all), images)
  np.testing.assert_array_equal(flipped, images[:, :, ::-1])
  centred = data.Augmentation(np.full((4, 2), 2), np.zeros(4, bool))
  np.testing.assert_array_equal(preprocessing.augment(images, 2, centred), images)
  corner = data.Augmentation(np.array([[0, 0], [0, 4], [4, 0], [1, 3]]), np.zeros(4, bool))
  cropped = preprocessing.augment(images, 2, corner)
  padded = np.zeros((4, 9, 9, 3), np.float32)
  padded[:, 2:7, 2:7] = images
  for i, (top, left) in enumerate(corner.crop_offsets):
    np.testing.assert_array_equal(cropped[i], padded[i, top : top + 5, left : left + 5])
  uint8 = (images * 255).astype(np.uint8)
  no_augmentation = data.Preprocess(crop_padding=0, flip=False)
  np.testing.assert_array_equal(
    data.preprocess(uint8, no_augmentation, np.random.default_rng(0)), data.preprocess(uint8, no_augmentation)
  )
  augmenting = data.Preprocess(crop_padding=2, flip=True)
  first = data.preprocess(uint8, augmenting, np.random.default_rng(5))
  np.testing.assert_array_equal(first, data.preprocess(uint8, augmenting, np.random.default_rng(5)))
  assert not np.array_equal(first, data.preprocess(uint8, augmenting, np.random.default_rng(6)))


def test_preprocess_config_validation():
  for kwargs in ({"channels": 2}, {"channels": 1, "mean": (0.1, 0.2, 0.3)}, {"crop_padding": -1}):
    with pytest.raises(ValueError) as excinfo:
      data.Preprocess(**kwargs)
    one_line_error(excinfo, str(next(iter(kwargs.values()))))


PLAIN = data.Preprocess(channels=1)


def test_train_batch_is_a_pure_function_of_seed_epoch_step():
  source = index_source(50)
  batch = data.train_batch(
    source, PLAIN, seed=3, epoch=1, step=2, global_batch_size=8, process_count=1, process_index=0
  )
  chex.assert_trees_all_equal(
    batch,
    data.train_batch(source, PLAIN, seed=3, epoch=1, step=2, global_batch_size=8, process_count=1, process_index=0),
  )
  assert batch["image"].shape == (8, 4, 4, 1) and batch["image"].dtype == np.float32
  assert batch["index"].dtype == np.int32 and batch["label"].dtype == np.int32
  np.testing.assert_array_equal(batch["image"][:, 0, 0, 0] * 255, batch["index"])  # images are the indexed ones
  np.testing.assert_array_equal(batch["label"], batch["index"] % 3)
  reference = np.random.default_rng([3, 1]).permutation(50)[16:24]
  np.testing.assert_array_equal(batch["index"], reference)
  noisy = dataclasses.replace(source, labels=(source.labels + 1) % 3)
  relabelled = data.train_batch(
    noisy, PLAIN, seed=3, epoch=1, step=2, global_batch_size=8, process_count=1, process_index=0
  )
  np.testing.assert_array_equal(relabelled["label"], (batch["index"] + 1) % 3)


def test_each_epoch_visits_every_example_once_in_a_new_order():
  source = index_source(50)
  assert data.steps_per_epoch(50, 8) == 6
  orders = []
  for epoch in range(2):
    indices = np.concatenate(
      [
        data.train_batch(
          source, PLAIN, seed=0, epoch=epoch, step=step, global_batch_size=8, process_count=1, process_index=0
        )["index"]
        for step in range(6)
      ]
    )
    assert len(np.unique(indices)) == 48 and set(indices) <= set(range(50))  # 2 dropped
    orders.append(indices)
  assert not np.array_equal(orders[0], orders[1])
  with pytest.raises(ValueError) as excinfo:
    data.train_batch(source, PLAIN, seed=0, epoch=0, step=6, global_batch_size=8, process_count=1, process_index=0)
  one_line_error(excinfo, "step=6")


def test_process_slices_union_is_the_global_batch():
  source = random_source(40)
  config = data.Preprocess(image_size=8, crop_padding=2, flip=True, mean=(0.5,), std=(0.25,))
  kwargs = dict(seed=1, epoch=2, step=3, global_batch_size=8)
  whole = data.train_batch(source, config, process_index=0, process_count=1, **kwargs)
  halves = [data.train_batch(source, config, process_index=p, process_count=2, **kwargs) for p in range(2)]
  assert halves[0]["image"].shape == (4, 8, 8, 3)
  chex.assert_trees_all_equal(whole, {k: np.concatenate([h[k] for h in halves]) for k in whole})
  quarters = [data.train_batch(source, config, process_index=p, process_count=4, **kwargs) for p in range(4)]
  chex.assert_trees_all_equal(whole, {k: np.concatenate([q[k] for q in quarters]) for k in whole})
  plain = data.preprocess(source.images(whole["index"]), data.Preprocess(image_size=8, mean=(0.5,), std=(0.25,)))
  assert not np.array_equal(whole["image"], plain)  # augmentation was applied


def test_train_batches_resume_and_prefetch_match_train_batch():
  source = random_source(30, size=5)
  config = data.Preprocess(image_size=7, crop_padding=1, flip=True)  # in-memory source fitted once up front
  run = list(
    data.train_batches(source, config, seed=4, global_batch_size=8, num_steps=8, process_index=1, process_count=2)
  )
  assert [step for step, _ in run] == list(range(8))
  for global_step, batch in run:
    epoch, step = divmod(global_step, 3)
    chex.assert_trees_all_equal(
      batch,
      data.train_batch(
        source, config, seed=4, epoch=epoch, step=step, global_batch_size=8, process_index=1, process_count=2
      ),
    )
  resumed = list(
    data.train_batches(
      source,
      config,
      seed=4,
      global_batch_size=8,
      num_steps=8,
      start_step=5,
      process_index=1,
      process_count=2,
      prefetch=0,
    )
  )
  chex.assert_trees_all_equal(resumed, run[5:])


def test_eval_batches_cover_every_example_once_with_a_mask():
  source = random_source(21, size=4)
  config = data.Preprocess(crop_padding=2, flip=True)
  per_process = [list(data.eval_batches(source, config, 8, process_index=p, process_count=2)) for p in range(2)]
  assert len(per_process[0]) == 3
  batches = [
    {k: np.concatenate([per_process[0][b][k], per_process[1][b][k]]) for k in per_process[0][b]} for b in range(3)
  ]
  index = np.concatenate([b["index"] for b in batches])
  mask = np.concatenate([b["mask"] for b in batches])
  assert mask.dtype == np.float32 and per_process[0][0]["mask"].shape == (4,)
  np.testing.assert_array_equal(mask, np.arange(24) < 21)
  np.testing.assert_array_equal(index[:21], np.arange(21))
  images = np.concatenate([b["image"] for b in batches])[:21]
  np.testing.assert_array_equal(images, data.preprocess(source.pixels, config))  # no augmentation
  np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches])[:21], source.labels)


def test_bad_batch_sizes_raise_one_line():
  source = index_source(20)
  with pytest.raises(ValueError) as excinfo:
    data.train_batch(source, PLAIN, seed=0, epoch=0, step=0, global_batch_size=10, process_index=0, process_count=3)
  one_line_error(excinfo, "global_batch_size=10", "process_count=3")
  with pytest.raises(ValueError) as excinfo:
    data.train_batches(source, PLAIN, seed=0, global_batch_size=32, num_steps=1, process_index=0, process_count=1)
  one_line_error(excinfo, "global_batch_size=32", "20")
  with pytest.raises(ValueError) as excinfo:
    data.eval_batches(source, PLAIN, 9, process_index=0, process_count=2)
  one_line_error(excinfo, "global_batch_size=9", "process_count=2")


def test_process_defaults_come_from_jax():
  source = index_source(20)
  default = data.train_batch(source, PLAIN, seed=0, epoch=0, step=0, global_batch_size=4)
  explicit = data.train_batch(
    source, PLAIN, seed=0, epoch=0, step=0, global_batch_size=4, process_index=0, process_count=1
  )
  chex.assert_trees_all_equal(default, explicit)
