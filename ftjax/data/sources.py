"""Random-access example sources and their loaders: `load_dataset(name, data_dir, ...)` -> Splits.

A source keeps int32 `labels` [n] in memory and returns `images(indices)` -> uint8 [k, H, W, C]
(one H, W, C per source); an example's stable index is its position 0..n-1. Sources are frozen
dataclasses, so `dataclasses.replace(source, labels=noisy)` swaps labels in, and
`source.take(indices)` keeps a subset re-indexed 0..m-1. Datasets are found by name in `DATASETS`
(`register_dataset` adds one); 'tfds:NAME' reads the prepared tfds dataset NAME. Text datasets
('wordnet_nouns', 'wordnet_verbs', 'text_files', and tfds ones with text features such as 'tfds:glue/mrpc')
give `ftjax.data.text_sources.TextSource`s, which hold texts
(`texts_at(indices)`) in place of images. Nothing is ever downloaded.
"""

import dataclasses
import functools
import gzip
import importlib.util
import os
import struct
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np
from PIL import Image

from ftjax.data import text_sources
from ftjax.data.preprocessing import resize
from ftjax.data.splits import SPLIT_SEED, Labelled, Splits, SplitsWithValidation, split_per_class, splits_of

TFDS_PREFIX = "tfds:"  # 'tfds:NAME': the prepared tfds dataset NAME
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist/"
FASHION_MNIST_CLASSES = [
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
]
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff", ".webp")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_DATASETS = {  # kind: (default data_dir, class names, how to get the files)
  "fashion_mnist": (
    FASHION_MNIST_DIR,
    FASHION_MNIST_CLASSES,
    "install it with `apt-get install dataset-fashion-mnist`, or point data_dir at a "
    f"folder with the four IDX files ({', '.join(IDX_FILES)}, optionally .gz)",
  ),
  "mnist": (
    None,
    [str(d) for d in range(10)],
    f"point data_dir at a folder with the four MNIST IDX files ({', '.join(IDX_FILES)}, optionally .gz)",
  ),
}


@dataclasses.dataclass(frozen=True, eq=False)
class ArraySource(Labelled):
  """Images held in memory: pixels uint8 [n, H, W, C], labels int32 [n]."""

  pixels: np.ndarray
  labels: np.ndarray
  class_names: list[str]

  def images(self, indices: np.ndarray) -> np.ndarray:
    return self.pixels[indices]

  def take(self, indices: np.ndarray) -> "ArraySource":
    return dataclasses.replace(self, pixels=self.pixels[indices], labels=self.labels[indices])


@dataclasses.dataclass(frozen=True, eq=False)
class ImageFolderSource(Labelled):
  """Image files (paths str [n]) decoded with PIL on demand, converted to `mode` ('RGB' or 'L')
  and resized to image_size x image_size."""

  paths: np.ndarray
  labels: np.ndarray
  class_names: list[str]
  image_size: int
  mode: str = "RGB"

  def images(self, indices: np.ndarray) -> np.ndarray:
    return np.concatenate([resize(_decode(path, self.mode)[None], self.image_size) for path in self.paths[indices]])

  def take(self, indices: np.ndarray) -> "ImageFolderSource":
    return dataclasses.replace(self, paths=self.paths[indices], labels=self.labels[indices])


@dataclasses.dataclass(frozen=True, eq=False)
class TfdsSource(Labelled):
  """Records of a random-access tfds data source (`records[i]` is a feature dict); record_ids
  int [n] maps an index to its record; images are resized to image_size when it is set."""

  records: Any
  record_ids: np.ndarray
  labels: np.ndarray
  class_names: list[str]
  image_key: str
  image_size: int | None

  def images(self, indices: np.ndarray) -> np.ndarray:
    examples = self.records.__getitems__(self.record_ids[indices].tolist())
    return np.stack([_sized(example[self.image_key], self.image_size) for example in examples])

  def take(self, indices: np.ndarray) -> "TfdsSource":
    return dataclasses.replace(self, record_ids=self.record_ids[indices], labels=self.labels[indices])


def _decode(path: str, mode: str) -> np.ndarray:
  """uint8 [H, W, C] pixels of an image file in PIL `mode`."""
  with Image.open(path) as image:
    pixels = np.asarray(image.convert(mode))
  return pixels[..., None] if pixels.ndim == 2 else pixels


def _sized(image: np.ndarray, size: int | None) -> np.ndarray:
  """uint8 [H, W, C] -> [size, size, C] (unchanged when size is None)."""
  return image if size is None else resize(image[None], size)[0]


def load_digits(test_fraction: float = 0.2) -> Splits:
  """scikit-learn's 1797 8x8 digits as uint8 0..255 [n, 8, 8, 1], split stratified by class with a
  fixed seed; each split keeps the original order."""
  from sklearn.datasets import load_digits as sklearn_digits
  from sklearn.model_selection import train_test_split

  digits = sklearn_digits()
  pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int32)
  train, test = train_test_split(
    np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=SPLIT_SEED
  )
  source = ArraySource(pixels, labels, [str(d) for d in range(10)])
  return Splits(source.take(np.sort(train)), source.take(np.sort(test)))


def read_idx(path: str) -> np.ndarray:
  """The array stored in an IDX file (gzip-compressed when `path` ends in .gz), native byte order."""
  try:
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError) as e:  # a damaged or truncated .gz
    raise ValueError(f"IDX file {path} cannot be read ({type(e).__name__}: {e}); valid: a whole IDX file") from e
  if len(data) < 4:
    raise ValueError(f"IDX file {path} is truncated: {len(data)} bytes; valid: a whole IDX file")
  zero, code, ndim = struct.unpack(">HBB", data[:4])
  if zero != 0 or code not in _IDX_DTYPES:
    raise ValueError(f"{path} is not an IDX file (header {data[:4].hex()})")
  if len(data) < 4 + 4 * ndim:
    raise ValueError(
      f"IDX file {path} is truncated: {len(data)} bytes, shorter than its header; valid: a whole IDX file"
    )
  shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
  dtype = np.dtype(_IDX_DTYPES[code])
  expected = 4 + 4 * ndim + int(np.prod(shape)) * dtype.itemsize
  if len(data) < expected:
    raise ValueError(
      f"IDX file {path} is truncated: {len(data)} bytes where its header {list(shape)} needs {expected}; "
      "valid: a whole IDX file (download or unpack it again)"
    )
  array = np.frombuffer(data, dtype, count=int(np.prod(shape)), offset=4 + 4 * ndim).reshape(shape)
  return array.astype(dtype.newbyteorder("="))


def check_data_dir_is_no_file(data_dir: str | None) -> None:
  """A one-line error if `data_dir` names an existing file (every dataset's data_dir is a folder)."""
  if data_dir and os.path.exists(data_dir) and not os.path.isdir(data_dir):
    raise ValueError(f"data_dir={data_dir!r} is a file, not a directory; valid: the folder that holds the dataset")


def _idx_paths(kind: str, data_dir: str | None) -> list[str]:
  """Paths of the four IDX files of `kind` (plain or .gz), in IDX_FILES order."""
  default_dir, _, how_to_get = _IDX_DATASETS[kind]
  data_dir = data_dir or default_dir
  if data_dir is None:
    raise ValueError(f"dataset {kind!r} needs data_dir: {how_to_get}")
  check_data_dir_is_no_file(data_dir)
  paths = []
  for stem in IDX_FILES:
    found = [p for p in (os.path.join(data_dir, stem), os.path.join(data_dir, stem + ".gz")) if os.path.isfile(p)]
    if not found:
      raise FileNotFoundError(f"{kind}: {os.path.join(data_dir, stem)}[.gz] not found; {how_to_get}")
    paths.append(found[0])
  return paths


def load_idx(kind: str, data_dir: str | None = None) -> Splits:
  """'fashion_mnist' or 'mnist' from its four IDX files: uint8 [n, 28, 28, 1] (60000 train, 10000 test)."""
  train_images, train_labels, test_images, test_labels = (read_idx(p) for p in _idx_paths(kind, data_dir))
  class_names = _IDX_DATASETS[kind][1]
  return Splits(
    ArraySource(train_images[..., None], train_labels.astype(np.int32), class_names),
    ArraySource(test_images[..., None], test_labels.astype(np.int32), class_names),
  )


def _image_folder_root(data_dir: str | None) -> str:
  if data_dir is None:
    raise ValueError("dataset 'image_folder' needs data_dir: a folder with one sub-folder of images per class")
  check_data_dir_is_no_file(data_dir)
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(
      f"image folder data_dir={data_dir!r} does not exist (expected one sub-folder of "
      "images per class, or train/ and test/ folders laid out so)"
    )
  return data_dir


def _split_dirs(root: str, splits: tuple[str, ...]) -> tuple[str, ...] | None:
  """root/NAME for each of `splits` (train, test[, validation]) when root/TRAIN and root/TEST both exist, else None;
  a one-line error when a validation split is named but that layout or its folder is missing."""
  dirs = tuple(os.path.join(root, name) for name in splits)
  laid_out = os.path.isdir(dirs[0]) and os.path.isdir(dirs[1])
  if len(dirs) == 3 and not (laid_out and os.path.isdir(dirs[2])):
    missing = [f"{name}/" for name, d in zip(splits, dirs) if not os.path.isdir(d)]
    raise FileNotFoundError(
      f"splits={tuple(splits)!r} name a validation split, but image folder {root!r} has no {', '.join(missing)}; "
      f"valid: {splits[0]}/, {splits[1]}/ and {splits[2]}/ sub-folders each with one sub-folder of images per "
      "class, or two splits (with data.validation_fraction to hold out validation images)"
    )
  return dirs if laid_out else None


def _class_files(folder: str, need_every_class: bool = True) -> dict[str, list[str]]:
  """Sorted image paths per class sub-folder of `folder` (hidden entries skipped); a one-line error unless
  it has two classes or more and (if `need_every_class`; a test/ folder may lack some) images in each."""
  classes = sorted(d for d in os.listdir(folder) if not d.startswith(".") and os.path.isdir(os.path.join(folder, d)))
  valid = f"valid: at least two class sub-folders, each holding images ({', '.join(IMAGE_EXTENSIONS)})"
  if not classes:
    raise FileNotFoundError(f"image folder {folder!r} has no class sub-folders; {valid}")
  if len(classes) == 1 and need_every_class:
    raise ValueError(f"image folder {folder!r} has a single class ({classes[0]!r}), nothing to classify; {valid}")
  files = {
    c: sorted(
      os.path.join(folder, c, f)
      for f in os.listdir(os.path.join(folder, c))
      if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
    )
    for c in classes
  }
  empty = [c for c in classes if not files[c]]
  if len(empty) == len(classes):
    raise ValueError(f"image folder {folder!r} holds no images in its class sub-folders; {valid}")
  if empty and need_every_class:
    raise ValueError(f"image folder {folder!r}: class folder {empty[0]!r} holds no images; {valid}")
  return files


def check_images_decode(paths: Sequence[str]) -> None:
  """A one-line error naming the first of `paths` that PIL cannot identify or verify (zero-byte, corrupt or
  truncated image files), checked once when a dataset is opened."""
  for path in paths:
    try:
      with Image.open(path) as image:
        image.verify()
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ... for a bad file
      detail = " ".join(str(e).split())[:150]
      raise ValueError(
        f"image file {path!r} cannot be decoded ({type(e).__name__}: {detail}); valid: a whole image file "
        f"({', '.join(IMAGE_EXTENSIONS)}): replace or remove it"
      ) from e


def _folder_source(
  files: dict[str, list[str]], class_names: list[str], image_size: int, mode: str
) -> ImageFolderSource:
  """Examples ordered by class, then by path."""
  paths = [p for c in class_names for p in files.get(c, [])]
  labels = [i for i, c in enumerate(class_names) for _ in files.get(c, [])]
  return ImageFolderSource(np.asarray(paths, dtype=str), np.asarray(labels, np.int32), class_names, image_size, mode)


def _image_folder_files(
  root: str, test_fraction: float, splits: tuple[str, ...] = ("train", "test")
) -> tuple[dict[str, list[str]], ...]:
  """(train, test[, validation]) image paths per class of the image folder `root`: the sub-folders `splits` names
  when the first two exist (root/train/ and root/test/ by default; a third, validation, one must), otherwise each
  class split by `test_fraction`; a one-line error unless every class has training images and the test split has
  some."""
  dirs = _split_dirs(root, splits)
  if dirs:
    train_dir, *held_dirs = dirs
    train = _class_files(train_dir)
    held = [_class_files(folder, need_every_class=False) for folder in held_dirs]
    for folder, files in zip(held_dirs, held):
      unknown = sorted(set(files) - set(train))
      if unknown:
        raise ValueError(f"{folder} has classes missing from {train_dir}: {', '.join(unknown)}")
    return (train, *held)
  train, test = split_per_class(_class_files(root), test_fraction)
  untrained = [c for c in sorted(train) if not train[c]]
  if untrained:
    raise ValueError(
      f"image folder {root!r}: class {untrained[0]!r} has no training images once test_fraction={test_fraction} "
      f"of its {len(test[untrained[0]])} are held out; valid: more images in it, or a lower test_fraction"
    )
  if not any(test.values()):
    raise ValueError(
      f"image folder {root!r}: test_fraction={test_fraction} holds out no image of any class; valid: more images, "
      "or a higher test_fraction"
    )
  return train, test


def load_image_folder(
  root: str,
  image_size: int,
  test_fraction: float = 0.2,
  grayscale: bool = False,
  splits: tuple[str, ...] = ("train", "test"),
) -> Splits | SplitsWithValidation:
  """Images under root/CLASS/ (Caltech-256, MIT Indoor layout), class names sorted from the training images;
  root/train/ and root/test/ (the folders `splits` names) are used when both exist, with root/VALIDATION/ as the
  validation split when `splits` names a third, otherwise each class is split by `test_fraction`. Every image is
  checked to decode (`check_images_decode`) once per process."""
  root = _image_folder_root(root)
  mode = "L" if grayscale else "RGB"
  found = _image_folder_files(root, test_fraction, splits)
  class_names = sorted(found[0])
  _check_images_once(tuple(p for files in found for paths in files.values() for p in paths))
  return splits_of(*(_folder_source(files, class_names, image_size, mode) for files in found))


def _tfds_builder(name: str, data_dir: str | None):
  """The builder of a prepared tfds dataset; never downloads."""
  import tensorflow_datasets as tfds

  check_data_dir_is_no_file(data_dir)
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    builder = None
  except ValueError as e:  # tfds cannot parse the name (its message spans many lines)
    raise ValueError(
      f"dataset='tfds:{name}' does not name a tfds dataset; valid: 'tfds:NAME[/CONFIG][:VERSION]', NAME a "
      "dataset prepared in data_dir"
    ) from e
  if builder is None or not builder.is_prepared():
    raise FileNotFoundError(
      f"tfds dataset {name!r} is not prepared in data_dir={data_dir!r}; prepare it there "
      f"first (e.g. `tfds build {name} --data_dir=DIR`), nothing is downloaded at run time"
    )
  return builder


def _tfds_reader(builder, name: str) -> str:
  """'array_record' (tfds.data_source, random access, no TensorFlow) or 'tensorflow' (tfds.load)."""
  import tensorflow_datasets as tfds

  file_format = builder.info.file_format or tfds.core.FileFormat.TFRECORD  # unset in older datasets
  if file_format == tfds.core.FileFormat.ARRAY_RECORD:
    return "array_record"
  if importlib.util.find_spec("tensorflow") is not None:
    return "tensorflow"
  raise ImportError(
    f"tfds dataset {name!r} is stored as {file_format.value}: reading it needs TensorFlow "
    "(pip install tensorflow-cpu) or re-prepare it with file_format=array_record"
  )


def _every_record(records, chunk: int = 4096) -> Iterator[dict]:
  """Every example of a `tfds.data_source`, in order, read `chunk` at a time."""
  for start in range(0, len(records), chunk):
    yield from records.__getitems__(list(range(start, min(start + chunk, len(records)))))


def _tfds_random_access(name, data_dir, split, class_names, image_key, label_key, image_size) -> TfdsSource:
  """A TfdsSource over `tfds.data_source`; labels read once with image decoding skipped."""
  import tensorflow_datasets as tfds

  records = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  label_view = tfds.data_source(
    name, split=split, data_dir=data_dir, download=False, decoders={image_key: tfds.decode.SkipDecoding()}
  )
  labels = [example[label_key] for example in _every_record(label_view)]
  return TfdsSource(records, np.arange(len(records)), np.asarray(labels, np.int32), class_names, image_key, image_size)


def _tfds_in_memory(name, data_dir, split, class_names, image_key, label_key, image_size) -> ArraySource:
  """An ArraySource read through `tfds.load` (needs TensorFlow), images resized to image_size."""
  import tensorflow_datasets as tfds

  dataset = tfds.load(name, split=split, data_dir=data_dir, download=False, shuffle_files=False)
  images, labels = [], []
  for example in tfds.as_numpy(dataset):
    images.append(_sized(example[image_key], image_size))
    labels.append(example[label_key])
  return ArraySource(np.stack(images), np.asarray(labels, np.int32), class_names)


def _tfds_text(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _tfds_examples(name, data_dir, split, keys, reader) -> list[dict]:
  """The `keys` features of every example of `split`, in order (array_record: random access; else tfds.load)."""
  import tensorflow_datasets as tfds

  if reader == "array_record":
    records = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    return [{key: example[key] for key in keys} for example in _every_record(records)]
  dataset = tfds.load(name, split=split, data_dir=data_dir, download=False, shuffle_files=False)
  return [{key: example[key] for key in keys} for example in tfds.as_numpy(dataset)]


def _tfds_texts(name, data_dir, split, class_names, text_keys, label_key, reader) -> text_sources.TextSource:
  """A TextSource of `split`'s `text_keys` features (one, or two for sentence pairs) and labels."""
  examples = _tfds_examples(name, data_dir, split, (*text_keys, label_key), reader)
  labels = np.asarray([example[label_key] for example in examples], np.int32)
  if len(labels) and labels.min() < 0:
    raise ValueError(
      f"split {split!r} of tfds dataset {name!r} has unlabelled examples (label {labels.min()}, as GLUE's test "
      "splits); valid: data.splits naming labelled splits, e.g. ('train', 'validation')"
    )
  rows = [[_tfds_text(example[key]) for key in text_keys] for example in examples]
  return text_sources.TextSource(text_sources.text_array(rows, len(text_keys)), labels, class_names)


def load_tfds(
  name: str,
  data_dir: str | None = None,
  *,
  image_size: int | None = None,
  image_key: str = "image",
  label_key: str = "label",
  splits: tuple[str, ...] = ("train", "test"),
  text_keys: tuple[str, ...] = ("sentence",),
) -> Splits | SplitsWithValidation:
  """A prepared tfds dataset. Image datasets (an `image_key` feature): array_record ones read lazily by random
  access, others (tfrecord) loaded into memory with TensorFlow; `image_size` is required when image shapes vary.
  Text datasets (no `image_key` feature; the `text_keys` features, e.g. ('sentence1', 'sentence2') of
  'glue/mrpc'): TextSources held in memory. `splits` are tfds split strings (slicing allowed, e.g.
  'train[:80%]')."""
  builder = _tfds_builder(name, data_dir)
  reader = _tfds_reader(builder, name)
  features = builder.info.features
  holds_texts = image_key not in features and all(key in features for key in text_keys)
  if image_key not in features and not holds_texts:
    missing = next(key for key in text_keys if key not in features)
    raise ValueError(
      f"tfds dataset {name!r} has no feature {image_key!r} (images) nor {missing!r} (texts); "
      f"features: {', '.join(features)}"
    )
  if label_key not in features:
    raise ValueError(f"tfds dataset {name!r} has no feature {label_key!r}; features: {', '.join(features)}")
  class_names = list(features[label_key].names)
  if holds_texts:
    return splits_of(
      *(_tfds_texts(name, data_dir, split, class_names, text_keys, label_key, reader) for split in splits)
    )
  if image_size is None and None in features[image_key].shape:
    raise ValueError(f"tfds dataset {name!r} has images of varying size {features[image_key].shape}: pass image_size")
  read = _tfds_random_access if reader == "array_record" else _tfds_in_memory
  return splits_of(*(read(name, data_dir, split, class_names, image_key, label_key, image_size) for split in splits))


def examples_per_class_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
  """Sorted indices of `per_class` examples drawn (with `seed`) from each class; a class with fewer
  examples keeps all of them."""
  rng = np.random.default_rng(seed)
  chosen = [
    rng.choice(members, min(per_class, len(members)), replace=False)
    for members in (np.flatnonzero(labels == c) for c in np.unique(labels))
  ]
  return np.sort(np.concatenate(chosen))


class DatasetRequest(NamedTuple):
  """What a run asks of a dataset: `name` as configured ('tfds:NAME' whole); `data_dir` (None: the
  dataset's default location); `image_size` (None: native); `test_fraction` held out per class by
  datasets without a test split; `grayscale` (image folders); tfds's `image_key`, `label_key` and
  `splits` (split strings: train, test and optionally validation). 'text_files' reads data_dir/SPLIT.tsv, .csv or
  .jsonl for each of `splits` (file stems), its texts from the columns `text_keys` (one, or two for sentence pairs)
  and labels from `label_key`; 'image_folder' reads the sub-folders `splits` names when the first two exist."""

  name: str
  data_dir: str | None = None
  image_size: int | None = None
  test_fraction: float = 0.2
  grayscale: bool = False
  image_key: str = "image"
  label_key: str = "label"
  splits: tuple[str, ...] = ("train", "test")
  text_keys: tuple[str, ...] = ("sentence",)


def reads_no_files(request: DatasetRequest) -> None:
  """The check of a dataset that needs no files (nothing can be missing)."""


class DatasetLoader(NamedTuple):
  """How a dataset is read. `load(request)` returns its `Splits` with raw pixels (`load_dataset` then
  keeps `examples_per_class` and resizes in-memory sources to `image_size`); `check(request)` raises
  a one-line error unless its files exist, loading no image (config validation calls it)."""

  load: Callable[[DatasetRequest], Splits | SplitsWithValidation]
  check: Callable[[DatasetRequest], None] = reads_no_files
  named_splits: bool = False  # reads the splits `request.splits` names (so a third, validation, one too)


def check_idx_size(path: str) -> None:
  """A one-line error if the uncompressed IDX file at `path` is shorter than its header says (reads the header
  alone; a .gz file is checked when read)."""
  if path.endswith(".gz"):
    return
  with open(path, "rb") as f:
    head = f.read(4)
    ndim = head[3] if len(head) == 4 else 0
    shape = struct.unpack(f">{ndim}I", f.read(4 * ndim)) if len(head) == 4 else ()
  if len(head) < 4 or len(shape) < ndim or head[2] not in _IDX_DTYPES:
    read_idx(path)  # its one-line error for a file that is no IDX file
    return
  expected = 4 + 4 * ndim + int(np.prod(shape)) * np.dtype(_IDX_DTYPES[head[2]]).itemsize
  if os.path.getsize(path) < expected:
    raise ValueError(
      f"IDX file {path} is truncated: {os.path.getsize(path)} bytes where its header {list(shape)} needs "
      f"{expected}; valid: a whole IDX file (download or unpack it again)"
    )


def _idx_loader(kind: str) -> DatasetLoader:
  """The loader of the IDX dataset `kind` ('fashion_mnist' or 'mnist')."""

  def check(request: DatasetRequest) -> None:
    for path in _idx_paths(kind, request.data_dir):
      check_idx_size(path)

  return DatasetLoader(lambda request: load_idx(kind, request.data_dir), check)


def _load_image_folder(request: DatasetRequest) -> Splits | SplitsWithValidation:
  if request.image_size is None:
    raise ValueError("dataset 'image_folder' needs image_size (images are decoded lazily at that size)")
  return load_image_folder(
    request.data_dir, request.image_size, request.test_fraction, request.grayscale, request.splits
  )


def _check_image_folder(request: DatasetRequest) -> None:
  """Its layout (`_image_folder_files`) and, once per process, that every image decodes."""
  found = _image_folder_files(_image_folder_root(request.data_dir), request.test_fraction, request.splits)
  _check_images_once(tuple(p for files in found for paths in files.values() for p in paths))


@functools.lru_cache(maxsize=8)
def _check_images_once(paths: tuple[str, ...]) -> None:
  check_images_decode(paths)


def _load_tfds(request: DatasetRequest) -> Splits | SplitsWithValidation:
  return load_tfds(
    request.name[len(TFDS_PREFIX) :],
    request.data_dir,
    image_size=request.image_size,
    image_key=request.image_key,
    label_key=request.label_key,
    splits=request.splits,
    text_keys=request.text_keys,
  )


def _check_tfds(request: DatasetRequest) -> None:
  tfds_name = request.name[len(TFDS_PREFIX) :]
  _tfds_reader(_tfds_builder(tfds_name, request.data_dir), tfds_name)


def _wordnet_loader(pos: str) -> DatasetLoader:
  """The loader of WordNet's `pos` synsets labelled by supersense (data_dir None: /usr/share/wordnet, where
  Debian's `wordnet-base` installs it)."""
  return DatasetLoader(
    lambda request: text_sources.load_wordnet_supersenses(request.data_dir, pos, request.test_fraction),
    lambda request: text_sources.check_wordnet(request.data_dir, pos),
  )


def _load_text_files(request: DatasetRequest) -> Splits | SplitsWithValidation:
  return text_sources.load_text_folder(request.data_dir, request.splits, request.text_keys, request.label_key)


def _check_text_files(request: DatasetRequest) -> None:
  text_sources.text_folder_files(request.data_dir, request.splits)


DATASETS: dict[str, DatasetLoader] = {
  "digits": DatasetLoader(lambda request: load_digits(request.test_fraction)),
  "fashion_mnist": _idx_loader("fashion_mnist"),
  "mnist": _idx_loader("mnist"),
  "image_folder": DatasetLoader(_load_image_folder, _check_image_folder, named_splits=True),
  "wordnet_nouns": _wordnet_loader("noun"),
  "wordnet_verbs": _wordnet_loader("verb"),
  "text_files": DatasetLoader(_load_text_files, _check_text_files, named_splits=True),
}
TFDS = DatasetLoader(_load_tfds, _check_tfds, named_splits=True)  # the loader of every 'tfds:NAME'


def register_dataset(name: str, loader: DatasetLoader) -> None:
  """Adds (or replaces) the dataset `name`: `load_dataset`, `check_dataset` and the config's `dataset`
  field accept it."""
  if not isinstance(loader, DatasetLoader):
    raise TypeError(f"register_dataset({name!r}, ...) needs a DatasetLoader; got {type(loader).__name__}")
  if not isinstance(name, str) or not name or name.startswith(TFDS_PREFIX):
    raise ValueError(f"register_dataset(name={name!r}, ...): valid: a non-empty name not starting with {TFDS_PREFIX!r}")
  DATASETS[name] = loader


def is_dataset_name(name: Any) -> bool:
  """Whether `name` is a registered dataset or 'tfds:NAME'."""
  is_tfds = isinstance(name, str) and name.startswith(TFDS_PREFIX) and len(name) > len(TFDS_PREFIX)
  return is_tfds or (isinstance(name, str) and name in DATASETS)


def dataset_loader(name: str) -> DatasetLoader:
  """The loader of dataset `name` (`TFDS` for 'tfds:NAME'); a one-line error for an unknown name."""
  if not is_dataset_name(name):
    raise ValueError(f"dataset={name!r} is not a known dataset; valid: {', '.join(DATASETS)} or 'tfds:NAME'")
  return DATASETS[name] if name in DATASETS else TFDS


def check_splits(name: str, loader: DatasetLoader, splits: tuple[str, ...]) -> None:
  """One-line error unless `splits` are (train, test), or (train, test, validation) for a dataset that reads named
  splits."""
  if len(splits) == 3 and not loader.named_splits:
    raise ValueError(
      f"splits={tuple(splits)!r} name a validation split, but dataset {name!r} has no named splits; valid: "
      "(train, test), with data.validation_fraction to hold out validation examples, or a dataset with named "
      "splits ('tfds:NAME', 'text_files', 'image_folder')"
    )
  if len(splits) not in (2, 3):
    raise ValueError(f"splits={tuple(splits)!r}; valid: (train, test) or (train, test, validation) split names")


def check_dataset(
  name: str, data_dir: str | None = None, test_fraction: float = 0.2, *, splits: tuple[str, ...] = ("train", "test")
) -> None:
  """One-line error unless `name` is valid, `splits` fit it (`check_splits`) and its files exist and are readable
  (an image folder's images are checked to decode, once per process; an IDX file's size against its header; a
  text folder's file of each of `splits`); loads no examples."""
  loader = dataset_loader(name)
  check_splits(name, loader, splits)
  check_data_dir_is_no_file(data_dir)
  loader.check(DatasetRequest(name, data_dir, test_fraction=test_fraction, splits=splits))


def load_dataset(
  name: str,
  data_dir: str | None = None,
  *,
  image_size: int | None = None,
  test_fraction: float = 0.2,
  examples_per_class: int | None = None,
  seed: int = 0,
  grayscale: bool = False,
  image_key: str = "image",
  label_key: str = "label",
  splits: tuple[str, ...] = ("train", "test"),
  text_keys: tuple[str, ...] = ("sentence",),
) -> Splits | SplitsWithValidation:
  """Train and test sources of dataset `name` (a key of DATASETS, or 'tfds:NAME' for a tfds dataset), and its own
  validation split when `splits` names a third.

  image_size: side every returned image has (None: native; required for image_folder and for tfds
  datasets of varying size); test_fraction: held out per class by digits and by an image folder
  without train/ and test/; examples_per_class: keep that many training examples per class (seeded
  by `seed`, re-indexed 0..m-1); grayscale: decode an image folder as L instead of RGB;
  image_key / label_key / splits: tfds feature names and split strings (train, test[, validation]); for
  'text_files', `splits` are the file stems in data_dir, `text_keys` the text column(s) and `label_key` the label
  column; for 'image_folder', `splits` are its sub-folders (used when the first two exist).
  """
  loader = dataset_loader(name)
  check_splits(name, loader, splits)
  check_data_dir_is_no_file(data_dir)
  if examples_per_class is not None and examples_per_class < 1:
    raise ValueError(f"examples_per_class={examples_per_class} must be positive")
  loaded = loader.load(
    DatasetRequest(name, data_dir, image_size, test_fraction, grayscale, image_key, label_key, splits, text_keys)
  )
  if examples_per_class is not None:
    keep = examples_per_class_subset(loaded.train.labels, examples_per_class, seed)
    loaded = loaded._replace(train=loaded.train.take(keep))
  if image_size is not None:  # in-memory sources are resized once, here; lazy ones decode at image_size
    loaded = splits_of(
      *(
        dataclasses.replace(s, pixels=resize(s.pixels, image_size)) if isinstance(s, ArraySource) else s for s in loaded
      )
    )
  return loaded
