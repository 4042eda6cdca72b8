"""Checksum-verified, atomic downloads into a local cache. The only network access we make."""

from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile
import urllib.error
import urllib.request
from typing import Callable, Iterable, Sequence

from absl import logging

from cmim_jax.errors import CmimError

CACHE_ENV_VAR = "CMIM_JAX_CACHE"


class DownloadError(CmimError, RuntimeError):
  """A file could not be fetched from any mirror, or its checksum did not match."""


def cache_dir() -> pathlib.Path:
  """The download cache: $CMIM_JAX_CACHE if set, else ~/.cache/cmim_jax."""
  return pathlib.Path(os.environ.get(CACHE_ENV_VAR) or pathlib.Path.home() / ".cache" / "cmim_jax")


def sha256_of(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def download(urls: Sequence[str], destination: str | os.PathLike, accepted_sha256: Iterable[str],
             *, digest: Callable[[bytes], str] = sha256_of, timeout: float = 30.0) -> pathlib.Path:
  """Fetches the first URL that answers and whose SHA-256 is accepted, and writes it atomically.

  The bytes go to a temporary file beside `destination` that is renamed into place only after the
  checksum matches, so a failed or mismatched download leaves nothing at `destination`.

  Args:
    urls: mirrors to try in order.
    destination: final path of the file.
    accepted_sha256: hex digests, one of which `digest(bytes)` must equal.
    digest: maps the downloaded bytes to a hex digest (default: their SHA-256); MNIST checks the
      SHA-256 of the decompressed content, so that re-compressed copies are accepted too.
    timeout: seconds per connection attempt.

  Returns:
    `destination` as a Path.

  Raises:
    DownloadError: listing every mirror's failure.
  """
  destination = pathlib.Path(destination)
  accepted = {digest.lower() for digest in accepted_sha256}
  failures = []
  for url in urls:
    try:
      with urllib.request.urlopen(url, timeout=timeout) as response:
        data = response.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
      failures.append(f"{url}: {e}")
      continue
    try:
      actual = digest(data)
    except Exception as e:  # A corrupt body can fail in the digest itself (e.g. bad gzip).
      failures.append(f"{url}: unreadable content ({e})")
      continue
    if actual not in accepted:
      failures.append(f"{url}: SHA-256 {actual} does not match the expected {sorted(accepted)}")
      continue
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
    try:
      with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp_name, destination)
    except BaseException:
      pathlib.Path(tmp_name).unlink(missing_ok=True)
      raise
    logging.info("Downloaded %s -> %s (SHA-256 verified).", url, destination)
    return destination
  raise DownloadError(f"Could not download {destination.name}:\n  " + "\n  ".join(failures))
