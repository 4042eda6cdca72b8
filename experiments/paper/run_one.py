"""Child process of `common.run_in_processes`: trains the config saved in WORKDIR.

  python -m experiments.paper.run_one WORKDIR NUM_DEVICES   (NUM_DEVICES 0 = all)
"""

import json
import pathlib

import ml_collections

from experiments import cli
from experiments.paper import common


def main(argv) -> None:
  workdir = pathlib.Path(argv[1])
  config = ml_collections.ConfigDict(json.loads((workdir / "requested_config.json").read_text()))
  num_devices = int(argv[2]) or None
  common.run_or_load(config, workdir, num_devices)


if __name__ == "__main__":
  cli.run(main)
