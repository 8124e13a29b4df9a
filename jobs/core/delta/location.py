"""Where a table lives: one URI form for Spark, delta-rs and pyarrow's file systems."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import pyarrow.fs as pafs


def table_uri(path: str) -> str:
    """An absolute local path, or the URI unchanged when it has a scheme (s3://, abfss://)."""
    parsed = urlparse(path)
    if parsed.scheme == "file":
        return os.path.abspath(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:  # not a Windows drive letter
        return path.rstrip("/")
    return os.path.abspath(path)


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow file system holding `uri`, and the path of `uri` inside it."""
    if "://" not in uri:  # a local path: no URI parsing of spaces, '#' or '%'
        return pafs.LocalFileSystem(), uri
    fs, inner = pafs.FileSystem.from_uri(uri)
    return fs, inner
