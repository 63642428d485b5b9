"""The package version, in one place: pyproject.toml reads it (`[tool.setuptools.dynamic]`), checkpoints
record it and every CLI prints it with `--version`."""
__version__ = "0.1.0"
