"""The augmentation experiment trains the method it is given with each setting's overrides."""

import pathlib

import pytest

from experiments.paper import infonce_augment


@pytest.mark.parametrize("method", ["infonce", "infonce_x"])
def test_run_config_trains_the_method_with_the_settings_augmentations(method):
  preset = infonce_augment.PRESETS["cpu"]
  for setting, overrides in infonce_augment.SETTINGS.items():
    config = infonce_augment.run_config(setting, 1, preset, pathlib.Path("/split"), method, 10.0)
    assert (config.loss.method, config.loss.infonce_weight) == (method, 10.0)
    assert {k: config.augment[k] for k in overrides} == overrides
    assert (config.seed, config.model.latent_dim) == (1, preset["latent_dim"])
    assert config.data.data_dir == "/split" and not config.data.allow_fallback
