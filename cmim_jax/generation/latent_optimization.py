"""Property optimisation in a SMILES model's latent space under a similarity constraint.

MolMIM (Reidenbach et al., arXiv:2208.09016) runs CMA-ES over the latent code from a molecule's
encoding and scores each decoded molecule with an oracle, on the constrained benchmarks of
JT-VAE (Jin et al., arXiv:1802.04364) and QMO (Hoffman et al., arXiv:2011.01921):
  QED:  start molecules with QED in [0.7, 0.8); success when a decoded molecule reaches QED >= 0.9
        with Tanimoto (ECFP4) similarity >= 0.4 to its start molecule.
  plogP: the start molecules of lowest penalised logP; per molecule the improvement of the best
        decoded molecule with similarity >= delta (delta in {0.4, 0.6}); success when it improves.
Here all start molecules' CMA-ES runs advance together: evosax's CMA_ES is vmapped over the
molecules, each generation's M x population latents are decoded in one batch, and the oracle
(RDKit) scores them on the host. Random search draws the same number of latents
z = mu + sigma * eps around the start encoding (the same sigma CMA-ES starts with).

Penalised logP here is the unnormalised logP - SA score - (ring atoms beyond 6 in the largest
ring), as in most papers after JT-VAE (which normalised each term by ZINC statistics).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cmim_jax.data import smiles as smiles_lib
from cmim_jax.generation import molecule_metrics, molecule_sampling

INVALID_SCORE = -100.0  # Fitness of a decode RDKit cannot parse.
SIMILARITY_PENALTY = 10.0  # Fitness loss per unit of similarity below the threshold.


def qed(smiles: str) -> float | None:
  """RDKit's QED drug-likeness in [0, 1], None for an invalid SMILES."""
  from rdkit import Chem  # pylint: disable=g-import-not-at-top
  from rdkit.Chem import QED  # pylint: disable=g-import-not-at-top
  mol = Chem.MolFromSmiles(smiles) if smiles else None
  return None if mol is None else float(QED.qed(mol))


def penalized_logp(smiles: str) -> float | None:
  """logP - SA score - max(largest ring size - 6, 0) (unnormalised), None for an invalid SMILES."""
  from rdkit import Chem  # pylint: disable=g-import-not-at-top
  from rdkit.Chem import Crippen  # pylint: disable=g-import-not-at-top
  from rdkit.Contrib.SA_Score import sascorer  # pylint: disable=g-import-not-at-top
  mol = Chem.MolFromSmiles(smiles) if smiles else None
  if mol is None:
    return None
  rings = [len(r) for r in mol.GetRingInfo().AtomRings()]
  ring_penalty = max(max(rings, default=0) - 6, 0)
  return float(Crippen.MolLogP(mol) - sascorer.calculateScore(mol) - ring_penalty)


PROPERTIES: dict[str, Callable[[str], float | None]] = {"qed": qed, "plogp": penalized_logp}


@dataclasses.dataclass(frozen=True)
class Task:
  """One constrained optimisation benchmark.

  Attributes:
    prop: "qed" or "plogp".
    similarity: minimum Tanimoto similarity to the start molecule.
    success_value: a feasible molecule with at least this property value succeeds; None: any
      feasible improvement over the start succeeds.
  """
  prop: str
  similarity: float
  success_value: float | None = None

  @property
  def name(self) -> str:
    return f"{self.prop}_sim{self.similarity:g}"


def score(candidates: Sequence[str], starts: Sequence[str], task: Task) -> tuple[np.ndarray, ...]:
  """(value [N] (NaN invalid), similarity [N], fitness [N]) of candidates vs their start
  molecules: fitness = value + penalty * min(similarity - threshold, 0), INVALID_SCORE if invalid."""
  oracle = PROPERTIES[task.prop]
  values = np.array([np.nan if (v := oracle(c)) is None else v for c in candidates])
  similarity = np.array([molecule_metrics.tanimoto(c, s) for c, s in zip(candidates, starts)])
  fitness = np.where(np.isnan(values), INVALID_SCORE,
                     values + SIMILARITY_PENALTY * np.minimum(similarity - task.similarity, 0.0))
  return values, similarity, fitness


def optimize(trained, start_smiles: Sequence[str], task: Task, optimizer: str,
             population: int, generations: int, sigma: float, seed: int = 0,
             batch_size: int = 500) -> dict[str, np.ndarray]:
  """Runs `optimizer` ("cma_es" or "random") from each start molecule's encoding.

  Budget: population x generations oracle calls per molecule, for both optimisers.

  Returns:
    start_value [M], best_value [M] (best feasible value: valid and similarity >= threshold; NaN
    when none), success bool [M].
  """
  vocab, length = trained.task.vocab, trained.task.seq_length
  model, params, mesh = trained.model, trained.params, trained.mesh
  tokens, _ = smiles_lib.encode_batch(vocab, [smiles_lib.tokenize(s) for s in start_smiles],
                                      trained.task.max_tokens)
  mu = np.asarray(model.apply({"params": params}, jnp.asarray(tokens), method="encode")[0])
  num, dim = mu.shape
  oracle = PROPERTIES[task.prop]
  start_value = np.array([oracle(s) for s in start_smiles])
  best = np.full(num, np.nan)
  key = jax.random.key(seed)
  repeated_starts = [s for s in start_smiles for _ in range(population)]

  def evaluate(z: np.ndarray) -> np.ndarray:
    decoded = smiles_lib.decode_batch(vocab, molecule_sampling.decode_latents(
        model, params, mesh, z.reshape(-1, dim), length, key, 0.0, batch_size))
    values, similarity, fitness = score(decoded, repeated_starts, task)
    feasible = np.where(similarity >= task.similarity, values, np.nan).reshape(num, population)
    np.fmax(best, np.nanmax(np.where(np.isnan(feasible), -np.inf, feasible), axis=1), out=best)
    return fitness.reshape(num, population)

  if optimizer == "random":
    for generation in range(generations):
      eps = jax.random.normal(jax.random.fold_in(key, generation), (num, population, dim))
      evaluate(mu[:, None] + sigma * np.asarray(eps))
  elif optimizer == "cma_es":
    from evosax.algorithms import CMA_ES  # pylint: disable=g-import-not-at-top
    strategy = CMA_ES(population_size=population, solution=jnp.zeros(dim))
    es_params = strategy.default_params.replace(std_init=sigma)
    keys = jax.random.split(key, num)
    state = jax.vmap(strategy.init, in_axes=(0, 0, None))(keys, jnp.asarray(mu), es_params)
    ask = jax.jit(jax.vmap(strategy.ask, in_axes=(0, 0, None)))
    tell = jax.jit(jax.vmap(strategy.tell, in_axes=(0, 0, 0, 0, None)))
    for generation in range(generations):
      ask_keys = jax.random.split(jax.random.fold_in(key, 2 * generation), num)
      tell_keys = jax.random.split(jax.random.fold_in(key, 2 * generation + 1), num)
      candidates, state = ask(ask_keys, state, es_params)
      fitness = evaluate(np.asarray(candidates))
      state, _ = tell(tell_keys, candidates, -jnp.asarray(fitness), state, es_params)  # Minimises.
  else:
    raise ValueError(f"optimizer must be 'cma_es' or 'random', got {optimizer!r}.")
  best = np.where(np.isfinite(best), best, np.nan)
  if task.success_value is None:
    success = np.nan_to_num(best - start_value, nan=-np.inf) > 0
  else:
    success = np.nan_to_num(best, nan=-np.inf) >= task.success_value
  return dict(start_value=start_value, best_value=best, success=success)


def summarize(result: dict[str, np.ndarray], num_bootstrap: int = 1000,
              seed: int = 0) -> dict[str, float]:
  """Success rate and mean improvement (best feasible - start, 0 where none is feasible, as in
  JT-VAE's tables) with 95 % bootstrap intervals over the start molecules."""
  success = result["success"].astype(np.float64)
  improvement = np.nan_to_num(np.maximum(result["best_value"] - result["start_value"], 0.0))
  rng = np.random.default_rng(seed)
  rows = rng.integers(0, len(success), (num_bootstrap, len(success)))
  out = {"num_molecules": len(success)}
  for name, values in (("success_rate", success), ("mean_improvement", improvement)):
    means = values[rows].mean(axis=1)
    out[name] = float(values.mean())
    out[f"{name}_ci95"] = [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]
  return out
