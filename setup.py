"""ftjax: robust fine-tuning of pretrained networks in JAX/Flax."""

import pathlib

import setuptools

# What `python -m experiments.finetune` (and measure, sweep, pretrain) needs: requirements.txt, one per line.
REQUIREMENTS = [
  line.strip()
  for line in (pathlib.Path(__file__).parent / "requirements.txt").read_text().splitlines()
  if line.strip() and not line.lstrip().startswith("#")
]

EXTRAS = {
  # The test suite and its linter: pip install -e '.[test]' then ruff check . and python -m pytest -q -n 2 (no PyTorch).
  "test": ["pytest", "pytest-xdist", "chex>=0.1.92", "nbformat", "nbclient", "ipykernel", "ruff==0.17.6"],
  # The live comparisons against PyTorch (tests/test_*_parity_live.py: torchvision ResNets, timm ViTs, transformers'
  # BERT/RoBERTa, built with random weights) and reading .pth/.pt/.bin files. On Linux pip otherwise pulls a CUDA
  # build of torch; install the CPU build first where no GPU is used (timm then with --no-deps, see README).
  "parity": ["torch>=2.0", "transformers==5.24.0", "timm==1.0.31"],
  # Running examples/quickstart.ipynb in Jupyter.
  "notebook": ["notebook", "ipykernel", "nbclient"],
  # Viewing the event files a run writes under DIR/tensorboard (writing them needs only tensorboardX).
  "tensorboard": ["tensorboard"],
}

setuptools.setup(
  name="ftjax",
  version="0.1.0",
  description="Robust fine-tuning of pretrained networks: distance regularisation, noisy labels, Hessian measures.",
  packages=setuptools.find_packages(include=["ftjax", "ftjax.*"]),
  package_data={"ftjax": ["pretrained_weights/*.msgpack", "pretrained_weights/*.json"]},
  python_requires=">=3.10",
  install_requires=REQUIREMENTS,
  extras_require=EXTRAS,
)
