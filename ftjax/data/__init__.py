"""Datasets as random-access sources (`load_dataset`), numpy preprocessing (`Preprocess`), and
deterministic per-(seed, epoch, step) batches sharded over processes (`train_batches`, `eval_batches`)."""

from ftjax.data.pipeline import (epoch_permutation, eval_batches, fitted_source, steps_per_epoch, train_batch,
                                 train_batches)
from ftjax.data.preprocessing import (IMAGENET_MEAN, IMAGENET_STD, Augmentation, Preprocess, fit_images,
                                      preprocess, preprocess_with, sample_augmentation)
from ftjax.data.sources import (DATASETS, ArraySource, ImageFolderSource, Source, Splits, TfdsSource,
                                check_dataset, examples_per_class_subset, load_dataset, read_idx)
