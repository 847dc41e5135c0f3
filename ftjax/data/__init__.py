"""Datasets as random-access sources found by name (`load_dataset`, `register_dataset`), numpy
preprocessing (`Preprocess`), and deterministic per-(seed, epoch, step) batches sharded over processes
(`train_batches`, `eval_batches`)."""

from ftjax.data.pipeline import (
  epoch_permutation,
  eval_batches,
  fitted_source,
  steps_per_epoch,
  train_batch,
  train_batches,
)
from ftjax.data.preprocessing import (
  IMAGENET_MEAN,
  IMAGENET_STD,
  Augmentation,
  Preprocess,
  fit_images,
  preprocess,
  preprocess_with,
  sample_augmentation,
)
from ftjax.data.sources import (
  DATASETS,
  TFDS_PREFIX,
  ArraySource,
  DatasetLoader,
  DatasetRequest,
  ImageFolderSource,
  Source,
  Splits,
  TfdsSource,
  check_dataset,
  dataset_loader,
  examples_per_class_subset,
  is_dataset_name,
  load_dataset,
  read_idx,
  register_dataset,
)

__all__ = [
    "ArraySource", "Augmentation", "DATASETS", "DatasetLoader", "DatasetRequest", "IMAGENET_MEAN", "IMAGENET_STD",
    "ImageFolderSource", "Preprocess", "Source", "Splits", "TFDS_PREFIX", "TfdsSource", "check_dataset",
    "dataset_loader", "epoch_permutation", "eval_batches", "examples_per_class_subset", "fit_images",
    "fitted_source", "is_dataset_name", "load_dataset", "preprocess", "preprocess_with", "read_idx",
    "register_dataset", "sample_augmentation", "steps_per_epoch", "train_batch", "train_batches",
]
