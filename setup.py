from setuptools import find_packages, setup

setup(
    name="dcal",
    version="0.1.0",
    description=(
        "Face verification with Dual Cross-Attention Learning (DCAL) Vision "
        "Transformers, built for identical twins and look-alikes"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["dcal", "dcal.*", "indexer", "indexer.*", "cli", "cli.*"]),
    install_requires=[
        "torch>=2.1",
        "torchvision",
        "timm>=1.0",
        "numpy",
        "pandas",
        "scikit-learn",
        "pillow",
        "click>=8.1",
        "safetensors",
        "pyyaml",
        "matplotlib",
        "mlflow-skinny",
        "sqlalchemy",
        "alembic",
    ],
    extras_require={
        # faiss-cpu and faiss-gpu install the same `faiss` module: pick one.
        "cpu": ["faiss-cpu"],
        "gpu": ["faiss-gpu"],
        "dev": ["pytest"],
    },
    entry_points={
        "console_scripts": [
            "dcal-data = cli.data:main",
            "dcal-train = cli.train:main",
            "dcal-eval = cli.eval:main",
            "dcal-enroll = cli.enroll:main",
            "dcal-match = cli.match:main",
            "dcal-verify = cli.verify:main",
            "dcal-gallery = cli.gallery:main",
        ],
    },
)
