"""The release of this package (also in pyproject.toml), named where a file from another release is refused."""

__version__ = "0.2.0"
