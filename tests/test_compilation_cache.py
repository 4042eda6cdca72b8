"""Where the persistent compilation cache goes (the CLI test checks that a run fills it)."""

import pathlib

from cmim_jax import compilation_cache


def test_config_setting_then_environment_then_data_cache(monkeypatch, tmp_path):
  monkeypatch.delenv(compilation_cache.ENV_VAR, raising=False)
  monkeypatch.setenv("CMIM_JAX_CACHE", str(tmp_path / "data_cache"))
  assert compilation_cache.cache_directory() == tmp_path / "data_cache" / "jax_cache"
  monkeypatch.setenv(compilation_cache.ENV_VAR, str(tmp_path / "from_env"))
  assert compilation_cache.cache_directory() == tmp_path / "from_env"
  assert compilation_cache.cache_directory("/x/y") == pathlib.Path("/x/y")
  assert compilation_cache.cache_directory("off") is None
  monkeypatch.setenv(compilation_cache.ENV_VAR, "off")
  assert compilation_cache.cache_directory() is None
  assert compilation_cache.cache_directory(str(tmp_path)) == tmp_path
