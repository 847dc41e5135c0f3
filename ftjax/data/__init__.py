"""Datasets as random-access sources found by name (`load_dataset`, `register_dataset`), numpy
preprocessing of images (`Preprocess`) and tokenisation of texts (`TextPreprocess`), and deterministic
per-(seed, epoch, step) batches sharded over processes and made ahead by a thread or by worker processes
(`train_batches`, `eval_batches`)."""

from ftjax.data import holdout, labels_file
from ftjax.data.pipeline import (
  BatchInputs,
  EvalPasses,
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
  TfdsSource,
  check_dataset,
  dataset_loader,
  examples_per_class_subset,
  is_dataset_name,
  load_dataset,
  read_idx,
  register_dataset,
)
from ftjax.data.splits import Source, Splits, SplitsWithValidation
from ftjax.data.text_preprocessing import TextPreprocess, TokenizedSource
from ftjax.data.text_sources import TextSource

__all__ = [
  "holdout",
  "labels_file",
  "ArraySource",
  "Augmentation",
  "BatchInputs",
  "EvalPasses",
  "DATASETS",
  "DatasetLoader",
  "DatasetRequest",
  "IMAGENET_MEAN",
  "IMAGENET_STD",
  "ImageFolderSource",
  "Preprocess",
  "Source",
  "Splits",
  "SplitsWithValidation",
  "TFDS_PREFIX",
  "TextPreprocess",
  "TextSource",
  "TfdsSource",
  "TokenizedSource",
  "check_dataset",
  "dataset_loader",
  "epoch_permutation",
  "eval_batches",
  "examples_per_class_subset",
  "fit_images",
  "fitted_source",
  "is_dataset_name",
  "load_dataset",
  "preprocess",
  "preprocess_with",
  "read_idx",
  "register_dataset",
  "sample_augmentation",
  "steps_per_epoch",
  "train_batch",
  "train_batches",
]
