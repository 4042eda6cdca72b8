"""Child process of `common.run_in_processes`: trains the config saved in WORKDIR."""

import json
import pathlib
import sys

import ml_collections

from experiments.paper import common


def main() -> None:
  workdir = pathlib.Path(sys.argv[1])
  config = ml_collections.ConfigDict(json.loads((workdir / "requested_config.json").read_text()))
  common.run_or_load(config, workdir)


if __name__ == "__main__":
  main()
