"""Checksum-verified, atomic downloads into a local cache. The only network access we make.

Rules (each a `DownloadError` or `ConfigError` naming the URL or file):
  * https only, redirects included. The one exception is plain http to this machine's loopback
    address (127.0.0.1, ::1, localhost): a mirror on the same machine, e.g. in tests, where no
    network carries the bytes; the checksum decides as for any mirror. file:// and other schemes
    are refused.
  * A size cap per file (`max_bytes`): a larger answer (by its Content-Length or by what arrives)
    is dropped unread.
  * A file already in the cache is verified against its checksum once, then a stamp beside it
    (`.<name>.verified`: its size, modification time and digest) saves hashing it again; a cached
    file that fails is downloaded again (and replaced only by a verified copy).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import pathlib
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable, Iterable, Sequence

from absl import logging

from cmim_jax import files
from cmim_jax.errors import CmimError, ConfigError

CACHE_ENV_VAR = "CMIM_JAX_CACHE"
DEFAULT_MAX_BYTES = 256 << 20
_CHUNK = 1 << 20


class DownloadError(CmimError, RuntimeError):
  """A file could not be fetched from any mirror, or its checksum did not match."""


def cache_dir() -> pathlib.Path:
  """The download cache: $CMIM_JAX_CACHE if set, else ~/.cache/cmim_jax."""
  return pathlib.Path(os.environ.get(CACHE_ENV_VAR) or pathlib.Path.home() / ".cache" / "cmim_jax")


def sha256_of(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _is_loopback(host: str | None) -> bool:
  if host == "localhost":
    return True
  try:
    return ipaddress.ip_address(host or "").is_loopback
  except ValueError:
    return False


def url_problem(url: str) -> str | None:
  """Why `url` may not be downloaded from (None when it may): see the module docstring."""
  parts = urllib.parse.urlsplit(url)
  if parts.scheme == "https" and parts.hostname:
    return None
  if parts.scheme == "http" and _is_loopback(parts.hostname):
    return None
  return (f"{url!r} is not an https:// URL (only https, or http to this machine's loopback "
          "address, is downloaded from)")


def check_mirrors(urls: Iterable[str], field: str = "data.mirrors") -> None:
  """Raises a ConfigError naming `field` and each URL that may not be downloaded from."""
  problems = [p for p in map(url_problem, urls) if p]
  if problems:
    raise ConfigError(f"{field}: " + "; ".join(problems) + ".")


class _HttpsRedirects(urllib.request.HTTPRedirectHandler):
  """Follows a redirect only to a URL `url_problem` accepts."""

  def redirect_request(self, req, fp, code, msg, headers, newurl):
    problem = url_problem(newurl)
    if problem:
      raise urllib.error.URLError(f"redirected to {problem}")
    return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpsRedirects)


def _fetch(url: str, timeout: float, max_bytes: int) -> bytes:
  """The body at `url`, or an OSError/ValueError when it fails or exceeds `max_bytes`."""
  with _OPENER.open(url, timeout=timeout) as response:
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
      raise ValueError(f"{length} bytes exceed the cap of {max_bytes} bytes for this file")
    chunks, size = [], 0
    while chunk := response.read(_CHUNK):
      size += len(chunk)
      if size > max_bytes:
        raise ValueError(f"more than the cap of {max_bytes} bytes for this file arrived")
      chunks.append(chunk)
  return b"".join(chunks)


def download(urls: Sequence[str], destination: str | os.PathLike, accepted_sha256: Iterable[str],
             *, digest: Callable[[bytes], str] = sha256_of, timeout: float = 30.0,
             max_bytes: int = DEFAULT_MAX_BYTES) -> pathlib.Path:
  """Fetches the first URL that answers and whose SHA-256 is accepted, and writes it atomically.

  The bytes go to a temporary file beside `destination` that is renamed into place only after the
  checksum matches, so a failed or mismatched download leaves nothing at `destination`. A stamp
  beside it records the verification (see `verified_in_cache`).

  Args:
    urls: mirrors to try in order; each must pass `url_problem`.
    destination: final path of the file.
    accepted_sha256: hex digests, one of which `digest(bytes)` must equal.
    digest: maps the downloaded bytes to a hex digest (default: their SHA-256); MNIST checks the
      SHA-256 of the decompressed content, so that re-compressed copies are accepted too.
    timeout: seconds per connection attempt.
    max_bytes: the most bytes accepted from one URL.

  Returns:
    `destination` as a Path.

  Raises:
    ConfigError: a URL is not https (nothing is fetched then).
    DownloadError: listing every mirror's failure.
  """
  check_mirrors(urls)
  destination = pathlib.Path(destination)
  accepted = {digest.lower() for digest in accepted_sha256}
  failures = []
  for url in urls:
    try:
      data = _fetch(url, timeout, max_bytes)
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
    files.write_atomic(destination, data)
    _write_stamp(destination, actual)
    logging.info("Downloaded %s -> %s (SHA-256 verified).", url, destination)
    return destination
  raise DownloadError(f"Could not download {destination.name}:\n  " + "\n  ".join(failures))


def _stamp_path(path: pathlib.Path) -> pathlib.Path:
  return path.with_name(f".{path.name}.verified")


def _identity(path: pathlib.Path) -> dict[str, int]:
  stat = path.stat()
  return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _write_stamp(path: pathlib.Path, digest: str) -> None:
  files.write_atomic(_stamp_path(path), json.dumps({**_identity(path), "sha256": digest}))


def verified_in_cache(path: str | os.PathLike, accepted_sha256: Iterable[str], *,
                      digest: Callable[[bytes], str] = sha256_of) -> bool:
  """Whether the cached file at `path` passes its checksum: hashed once, then remembered in a
  stamp beside it for as long as its size and modification time stay the same."""
  path = pathlib.Path(path)
  accepted = {d.lower() for d in accepted_sha256}
  try:
    stamp = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
    if stamp == {**_identity(path), "sha256": stamp.get("sha256")} and stamp["sha256"] in accepted:
      return True
  except (OSError, ValueError, AttributeError):
    pass
  try:
    actual = digest(path.read_bytes())
  except Exception:  # pylint: disable=broad-except  # Unreadable (e.g. bad gzip): not verified.
    return False
  if actual not in accepted:
    return False
  _write_stamp(path, actual)
  return True


def cached_download(urls: Sequence[str], destination: str | os.PathLike,
                    accepted_sha256: Sequence[str], **kwargs) -> pathlib.Path:
  """`destination` if it is in the cache and verifies (`verified_in_cache`), else `download`
  (`kwargs` as there); a cached file that fails is replaced by the verified download, with a
  warning."""
  destination = pathlib.Path(destination)
  if destination.is_file():
    if verified_in_cache(destination, accepted_sha256,
                         **{k: v for k, v in kwargs.items() if k == "digest"}):
      return destination
    logging.warning("The cached %s does not match its SHA-256; downloading it again (a "
                    "verified download replaces it).", destination)
  return download(urls, destination, accepted_sha256, **kwargs)
