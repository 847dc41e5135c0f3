"""ftjax: robust fine-tuning of pretrained networks in JAX/Flax."""

import pathlib

import setuptools

ROOT = pathlib.Path(__file__).parent


def requirements(name: str) -> list[str]:
  lines = (ROOT / name).read_text().splitlines()
  return [line.strip() for line in lines if line.strip() and not line.startswith(("#", "-r"))]


setuptools.setup(
    name="ftjax",
    version="0.1.0",
    description="Robust fine-tuning of pretrained networks: distance regularisation, noisy labels, Hessian measures.",
    packages=setuptools.find_packages(include=["ftjax", "ftjax.*"]),
    package_data={"ftjax": ["pretrained_weights/*.msgpack", "pretrained_weights/*.json"]},
    python_requires=">=3.10",
    install_requires=requirements("requirements.txt"),
    extras_require={"test": requirements("requirements-test.txt")},
)
