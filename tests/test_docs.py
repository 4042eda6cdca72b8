"""README.md and docs/*.md name only config fields and modules that exist (tests/docs_check.py)."""

from tests import docs_check


def test_every_config_field_and_module_named_in_the_docs_exists():
  texts = [path.read_text(encoding="utf-8") for path in docs_check.doc_files()]
  kinds = {kind for text in texts for _, kind, _ in docs_check.references(text)}
  assert kinds == {"field", "module"}  # The patterns still find references of both kinds.
  assert docs_check.check() == []


def test_the_checker_reports_a_missing_field_and_a_missing_module():
  snippet = "\n".join([
      "python -m experiments.main --config=experiments/configs/mnist.py \\",
      "    --config.model.latent_dim=8 --config.model.no_such_field=1",
      "then `.venv/bin/python -m experiments.no_such_script --workdir=DIR`",
      "not references: --config.FIELD=VALUE, python -m MODULE, python -m benchmarks.<name>",
      "a group is a field too: --config.model.perceiver; molecules only: --config.data.max_length=9",
  ])
  assert docs_check.problems(snippet, "snippet.md") == [
      "snippet.md:2: --config.model.no_such_field: no such field in any "
      "experiments/configs get_config()",
      "snippet.md:3: python -m experiments.no_such_script: no such module",
  ]
