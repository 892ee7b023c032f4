"""The generic training loop: any model family, any manifold, any dataset.

    from geogen import config as gconfig, training
    config = gconfig.load_config("configs/quickstart.py", ["train.num_steps=200"])
    results = training.train_and_evaluate(config, "runs/qs")   # -> the eval.json dict

What it does (DESIGN sections 3-4):

* builds the manifold (``from_spec``), the family (``geogen.models.get_family``), the dataset
  (``geogen.data.load``, validated before anything else) and the model;
* AdamW with linear warmup + cosine decay to 0, global-norm gradient clipping, an EMA of
  the parameters (decay min(ema_decay, (1 + step) / (10 + step)), so short runs are not
  dominated by the initialization); sampling and evaluation use the EMA parameters;
* a jit-compiled chunk of ``train.steps_per_dispatch`` steps under ``lax.scan``; data
  parallel over all devices (batch axis sharded, state replicated; `geogen.parallel`);
* determinism: the data order is a fixed function of (seed, step) (one seeded permutation
  of the training set per epoch), the step key is ``fold_in(train_key, step)``, and chunks
  break at the same steps (multiples of steps_per_dispatch, ckpt_every and eval_every)
  whether or not the run was interrupted, so a resumed run reproduces an uninterrupted one
  bit for bit;
* checkpoints (`geogen.checkpoint`): latest every ``train.ckpt_every`` steps, best by
  validation NLL (validation loss for families without a likelihood) every
  ``train.eval_every`` steps; rerunning the same command resumes;
* workdir: config.json (at start), metrics.jsonl (one JSON object per log step), eval.json
  (end), plots/*.png.

Data-less families (a module attribute ``NEEDS_DATA = False``, e.g. gflownet) load no
dataset: each step draws its batch inside the jitted step with
``family.make_batch(model, family_state, key, step) -> (batch, family_state, metrics)``;
the mutable family state (``family.init_state(model, config, key)``, e.g. a replay buffer)
lives in the train state under ``'family'``, so it is carried through the ``lax.scan``
chunk and checkpointed with the parameters (resume stays bit-exact).  Validation and the
final evaluation call ``family.evaluate(model, key, config, final) -> dict`` (with a
``'metric'``, lower is better, choosing the best checkpoint); its dict goes into eval.json.

Final evaluation uses the EMA parameters of the best checkpoint: val/test NLL in nats per
point on at most ``eval.max_points`` points each (a seeded random subset), with standard
errors and the solver's NFE; for synthetic data also the exact entropy and
kl = test_nll - entropy (and the paired estimate test_nll - mean(-log p_data(test))).
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from geogen import checkpoint as ckpt_lib
from geogen import config as gconfig
from geogen import parallel
from geogen.data import Dataset, load as load_data
from manifolds import from_spec

# ============================================================================ optimizer
def lr_schedule(tc):
  """Linear warmup ((step + 1) / warmup * lr) then cosine decay to 0 at num_steps."""
  lr, total = float(tc.lr), int(tc.num_steps)
  warm = min(int(tc.warmup_steps), total)

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    warm_lr = lr * (step + 1.0) / max(warm, 1)
    frac = jnp.clip((step - warm) / max(total - warm, 1), 0.0, 1.0)
    cos_lr = 0.5 * lr * (1.0 + jnp.cos(math.pi * frac))
    return jnp.where(step < warm, warm_lr, cos_lr)

  return schedule


def make_optimizer(tc):
  """(optax transformation, schedule) for the `train` config section."""
  schedule = lr_schedule(tc)
  parts = []
  if tc.grad_clip > 0:
    parts.append(optax.clip_by_global_norm(float(tc.grad_clip)))
  parts.append(optax.adamw(schedule, weight_decay=float(tc.weight_decay)))
  return optax.chain(*parts), schedule


def ema_decay(step, decay: float):
  """EMA decay at a step: min(decay, (1 + step) / (10 + step))."""
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


# ============================================================================ data order
class BatchOrder:
  """Deterministic batches: the stream of per-epoch permutations of range(n), cut in
  consecutive batches.  Batch s holds stream positions [s B, (s + 1) B)."""

  def __init__(self, n: int, batch_size: int, seed: int):
    self.n, self.b, self.seed = int(n), int(batch_size), int(seed)
    self._cache = {}

  def _perm(self, epoch: int) -> np.ndarray:
    if epoch not in self._cache:
      if len(self._cache) > 4:
        self._cache.pop(min(self._cache))
      self._cache[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n)
    return self._cache[epoch]

  def indices(self, start_step: int, num_steps: int) -> np.ndarray:
    """(num_steps, B) indices of the batches of steps start_step ... start_step+num_steps-1."""
    pos = np.arange(start_step * self.b, (start_step + num_steps) * self.b, dtype=np.int64)
    epochs, within = pos // self.n, pos % self.n
    out = np.empty_like(pos)
    for e in np.unique(epochs):
      sel = epochs == e
      out[sel] = self._perm(int(e))[within[sel]]
    return out.reshape(num_steps, self.b)


def chunk_end(step: int, tc) -> int:
  """End (exclusive) of the chunk that starts at `step`: the next multiple of
  steps_per_dispatch, ckpt_every or eval_every, capped at num_steps."""
  nxt = lambda m: (step // int(m) + 1) * int(m)
  return min(nxt(tc.steps_per_dispatch), nxt(tc.ckpt_every), nxt(tc.eval_every),
             int(tc.num_steps))


# ============================================================================ model / state
def needs_data(family) -> bool:
  """False for families trained without a dataset (module attribute NEEDS_DATA = False)."""
  return bool(getattr(family, "NEEDS_DATA", True))


def split_model(model):
  """(graphdef, params, rest): trainable nnx.Param state and everything else."""
  return nnx.split(model, nnx.Param, ...)


def build(config, dataset: Optional[Dataset] = None, mesh=None, load_dataset: bool = True):
  """Everything the loop needs, before any training.  -> dict.

  The dataset is loaded (and validated) first, so bad data fails before anything else;
  load_dataset=False skips it (sampling from a trained run needs no data)."""
  manifold = from_spec(config.manifold)
  from geogen.models import get_family
  family = get_family(config.model)
  if dataset is None and load_dataset and needs_data(family):
    dataset = load_data(config, manifold)
  mesh = parallel.make_mesh() if mesh is None else mesh
  root = jax.random.PRNGKey(int(config.seed))
  model = family.init(config, manifold, jax.random.fold_in(root, 0))
  graphdef, params, rest = split_model(model)
  tx, schedule = make_optimizer(config.train)
  state = {"params": params, "opt_state": tx.init(params),
           "ema": jax.tree_util.tree_map(jnp.array, params)}
  if hasattr(family, "init_state"):  # mutable family state (e.g. a replay buffer)
    state["family"] = family.init_state(model, config, jax.random.fold_in(root, 3))
  state = parallel.replicate(state, mesh)
  rest = parallel.replicate(rest, mesh)
  return dict(manifold=manifold, family=family, dataset=dataset, mesh=mesh, graphdef=graphdef,
              rest=rest, tx=tx, schedule=schedule, state=state,
              train_key=jax.random.fold_in(root, 1), eval_key=jax.random.fold_in(root, 2))


def make_chunk_fn(b: dict, tc):
  """jit-compiled (state, rest, batches (K, B, *shape), steps (K,)) -> (state, metrics)
  running K train steps under lax.scan; metrics are (K,) arrays.  Data-less families:
  (state, rest, steps (K,)) -> (state, metrics), the batches drawn by the family."""
  family, graphdef, tx, schedule = b["family"], b["graphdef"], b["tx"], b["schedule"]
  train_key, decay = b["train_key"], float(tc.ema_decay)
  with_data, mesh = needs_data(family), b["mesh"]

  def loss_fn(params, rest, batch, key):
    model = nnx.merge(graphdef, params, rest)
    value, metrics = family.loss(model, batch, key)
    return value, metrics

  def draw_batch(state, rest, key, step):
    """The family's own batch (no gradient flows through it), sharded on its batch axis."""
    model = nnx.merge(graphdef, state["params"], rest)
    batch, fstate, metrics = family.make_batch(model, state.get("family"), key, step)
    if jax.process_count() == 1:
      batch = jax.tree_util.tree_map(
          lambda a: jax.lax.with_sharding_constraint(a, parallel.batch_sharding(mesh, 0))
          if jnp.ndim(a) and a.shape[0] % mesh.size == 0 else a, batch)
    return batch, fstate, metrics

  def one_step(carry, inp):
    state, rest = carry
    batch, step = inp if with_data else (None, inp)
    key = jax.random.fold_in(train_key, step)
    extra, fstate = {}, state.get("family")
    if not with_data:
      batch, fstate, extra = draw_batch(state, rest, jax.random.fold_in(key, 1), step)
      key = jax.random.fold_in(key, 0)
    (value, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"], rest, batch, key)
    metrics = {**extra, **metrics}
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    d = ema_decay(step, decay)
    ema = jax.tree_util.tree_map(lambda e, p: (d * e + (1.0 - d) * p).astype(e.dtype),
                                 state["ema"], params)
    out = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()
           if jnp.ndim(v) == 0}
    out.update(loss=jnp.asarray(value, jnp.float32), grad_norm=optax.tree.norm(grads),
               lr=schedule(step))
    new = {"params": params, "opt_state": opt_state, "ema": ema}
    if "family" in state:
      new["family"] = fstate
    return (new, rest), out

  def chunk(state, rest, batches, steps):
    (state, _), metrics = jax.lax.scan(one_step, (state, rest), (batches, steps))
    return state, metrics

  def chunk_no_data(state, rest, steps):
    (state, _), metrics = jax.lax.scan(one_step, (state, rest), steps)
    return state, metrics

  repl, bsh = parallel.replicated(mesh), parallel.batch_sharding(mesh, 1)
  if not with_data:
    return jax.jit(chunk_no_data, in_shardings=(repl, repl, repl),
                   out_shardings=(repl, repl), donate_argnums=(0,))
  return jax.jit(chunk, in_shardings=(repl, repl, bsh, repl), out_shardings=(repl, repl),
                 donate_argnums=(0,))


def ema_model(b: dict, state):
  """The model with the EMA parameters."""
  return nnx.merge(b["graphdef"], state["ema"], b["rest"])


# ============================================================================ evaluation
def has_log_prob(family) -> bool:
  return callable(getattr(family, "log_prob_and_stats", None))


def subset(points: np.ndarray, cap: int, seed: int = 0) -> np.ndarray:
  """At most `cap` points: a seeded random subset (all of them if fewer)."""
  if points.shape[0] <= cap:
    return points
  idx = np.sort(np.random.default_rng(seed).permutation(points.shape[0])[:cap])
  return points[idx]


def _padded_batches(points: np.ndarray, bs: int):
  """Yield (batch padded to bs rows by repeating the last point, number of real rows)."""
  for start in range(0, points.shape[0], bs):
    xb = points[start:start + bs]
    n = xb.shape[0]
    if n < bs:
      xb = np.concatenate([xb, np.repeat(xb[-1:], bs - n, axis=0)], axis=0)
    yield xb, n


def _place(xb: np.ndarray, mesh):
  """Shard an eval batch over the devices when possible (single process), else replicate."""
  if jax.process_count() == 1 and xb.shape[0] % mesh.size == 0:
    return parallel.shard_batch(xb, mesh)
  return parallel.replicate(jnp.asarray(xb), mesh)


def nll(b: dict, model, points: np.ndarray, key, batch_size: int) -> dict:
  """Mean negative log-likelihood (nats per point) of `points` under `model`.

  -> {nll, nll_stderr, num_points, nfe (max per batch, averaged over batches),
      nfe_mean, per_point (N,)}.  Raises (the family's) errors on solver failure.
  """
  family, mesh = b["family"], b["mesh"]
  bs = min(int(batch_size), points.shape[0])
  bs = int(math.ceil(bs / mesh.size) * mesh.size)
  lps, nfes, nfe_means = [], [], []
  for i, (xb, n) in enumerate(_padded_batches(points, bs)):
    lp, stats = family.log_prob_and_stats(model, _place(xb, mesh), jax.random.fold_in(key, i))
    lp = parallel.to_host(lp)[:n].astype(np.float64)
    if not np.all(np.isfinite(lp)):
      raise FloatingPointError(f"non-finite log-likelihood for {int(np.sum(~np.isfinite(lp)))}"
                               " points")
    lps.append(lp)
    nfes.append(float(np.asarray(stats.get("nfe", np.nan))))
    nfe_means.append(float(np.asarray(stats.get("nfe_mean", stats.get("nfe", np.nan)))))
  v = -np.concatenate(lps)
  return {"nll": float(v.mean()), "nll_stderr": float(v.std(ddof=1) / math.sqrt(len(v)))
          if len(v) > 1 else float("nan"), "num_points": int(len(v)),
          "nfe": float(np.mean(nfes)), "nfe_mean": float(np.mean(nfe_means)), "per_point": v}


def mean_loss(b: dict, params, points: np.ndarray, key, batch_size: int) -> float:
  """Mean family loss over `points` (fixed key) with `params`: the validation metric of
  families without a likelihood."""
  family, graphdef = b["family"], b["graphdef"]
  n_dev = b["mesh"].size
  bs = int(math.ceil(min(batch_size, points.shape[0]) / n_dev) * n_dev)
  fn = jax.jit(lambda p, rest, x, k: family.loss(nnx.merge(graphdef, p, rest), x, k)[0])
  tot, cnt = 0.0, 0
  for i, (xb, n) in enumerate(_padded_batches(points, bs)):
    # padded rows repeat a real point; weight the batch by its real rows only
    val = float(parallel.to_host(fn(params, b["rest"], _place(xb, b["mesh"]),
                                    jax.random.fold_in(key, i))))
    tot, cnt = tot + val * n, cnt + n
  return tot / cnt


def validation_metric(b: dict, config, state) -> dict:
  """{'val_nll' or 'val_loss': value, 'metric': value, ...} with the EMA parameters
  (data-less families: their own `evaluate(..., final=False)` dict with a 'metric')."""
  model = ema_model(b, state)
  if not needs_data(b["family"]):
    return dict(b["family"].evaluate(model, jax.random.fold_in(b["eval_key"], 0), config,
                                     final=False))
  pts = subset(b["dataset"].val, int(config.eval.max_points))
  key = jax.random.fold_in(b["eval_key"], 0)  # same key at every eval: comparable values
  if has_log_prob(b["family"]):
    r = nll(b, model, pts, key, int(config.eval.batch_size))
    return {"val_nll": r["nll"], "val_nll_stderr": r["nll_stderr"], "val_nfe": r["nfe"],
            "metric": r["nll"]}
  v = mean_loss(b, state["ema"], pts, key, int(config.train.batch_size))
  return {"val_loss": v, "metric": v}


def final_evaluation(b: dict, config, state, val: Optional[dict] = None) -> dict:
  """val / test NLL (EMA parameters of `state`), plus entropy / KL for synthetic data;
  data-less families: their own `evaluate(..., final=True)` dict."""
  model = ema_model(b, state)
  if not needs_data(b["family"]):
    out = dict(b["family"].evaluate(model, jax.random.fold_in(b["eval_key"], 1), config,
                                    final=True))
    out["val_metric"] = out.pop("metric", None)
    return out
  ds, ec = b["dataset"], config.eval
  out = {}
  if has_log_prob(b["family"]):
    if val is None or "val_nll" not in val:
      val = validation_metric(b, config, state)
    test_pts = subset(ds.test, int(ec.max_points))
    t0 = time.time()
    r = nll(b, model, test_pts, jax.random.fold_in(b["eval_key"], 1), int(ec.batch_size))
    out.update(val_nll=val["val_nll"], val_nll_stderr=val["val_nll_stderr"],
               test_nll=r["nll"], test_nll_stderr=r["nll_stderr"], nfe=r["nfe"],
               nfe_mean=r["nfe_mean"], num_val_points=min(len(ds.val), int(ec.max_points)),
               num_test_points=r["num_points"], test_eval_time_s=time.time() - t0)
    if ds.entropy is not None:
      out.update(entropy=ds.entropy, entropy_stderr=ds.entropy_stderr,
                 kl=r["nll"] - ds.entropy)
    if ds.log_prob is not None:
      true_nll = -np.asarray(ds.log_prob(jnp.asarray(test_pts)), np.float64)
      diff = r["per_point"] - true_nll
      out.update(test_nll_data=float(true_nll.mean()), kl_paired=float(diff.mean()),
                 kl_paired_stderr=float(diff.std(ddof=1) / math.sqrt(len(diff)))
                 if len(diff) > 1 else float("nan"))
  else:
    if val is None:
      val = validation_metric(b, config, state)
    out.update(val_nll=None, test_nll=None, nfe=None, val_loss=val["val_loss"],
               test_loss=mean_loss(b, state["ema"], subset(ds.test, int(ec.max_points)),
                                   jax.random.fold_in(b["eval_key"], 1),
                                   int(config.train.batch_size)))
  return out


# ============================================================================ workdir files
def _write_json_atomic(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
  os.replace(tmp, path)


def _json_default(o):
  if isinstance(o, (np.floating, np.integer)):
    return o.item()
  if isinstance(o, np.ndarray):
    return o.tolist()
  return str(o)


def _clean(d: dict) -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, (np.ndarray, jax.Array)) and np.ndim(v) == 0:
      v = np.asarray(v).item()
    if isinstance(v, float) and not math.isfinite(v):
      v = None if math.isnan(v) else str(v)
    out[k] = v
  return out


def prepare_workdir(config, workdir: str) -> None:
  """Create the workdir and write config.json; refuse to resume with a different config."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    with open(path) as f:
      old = gconfig.from_json(f.read())
    blocking = gconfig.blocking_changes(old, config)
    if blocking:
      details = "; ".join(f"{k}: {gconfig.flatten(old).get(k)!r} -> "
                          f"{gconfig.flatten(config).get(k)!r}" for k in blocking[:10])
      raise gconfig.ConfigError(
          f"{workdir} holds a run with a different config ({details}); resuming would not "
          "reproduce it. Use a new --workdir, or the same config to resume.")
  if parallel.is_main_process():
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      f.write(gconfig.to_json(config))
    os.replace(tmp, path)


def truncate_metrics(path: str, step: int) -> None:
  """Drop metrics.jsonl lines after `step` (written by a run killed after its last
  checkpoint; the resumed run writes them again)."""
  if not os.path.exists(path):
    return
  keep = []
  with open(path) as f:
    for line in f:
      try:
        if json.loads(line)["step"] <= step:
          keep.append(line if line.endswith("\n") else line + "\n")
      except (ValueError, KeyError):
        continue  # a line cut by the kill
  with open(path + ".tmp", "w") as f:
    f.writelines(keep)
  os.replace(path + ".tmp", path)


class MetricsWriter:
  def __init__(self, path: str, enabled: bool):
    self.path, self.enabled = path, enabled

  def write(self, record: dict) -> None:
    if self.enabled:
      with open(self.path, "a") as f:
        f.write(json.dumps(_clean(record), default=_json_default) + "\n")


def read_metrics(workdir: str) -> list:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(l) for l in f if l.strip()]


# ============================================================================ the loop
def _progress_bar(config, start: int, enabled: bool):
  if not (enabled and config.train.progress):
    return None
  from tqdm.auto import tqdm
  return tqdm(total=int(config.train.num_steps), initial=start, unit="step",
              dynamic_ncols=True, smoothing=0.1)


def train(config, workdir: str, mesh=None) -> dict:
  """Run (or resume) training in `workdir` on `mesh` (default: all devices).
  -> {'build': b, 'state', 'step', 'ckpt', 'last_val', timings}."""
  config = gconfig.validate(config)
  mesh = parallel.make_mesh() if mesh is None else mesh
  parallel.check_batch_size(int(config.train.batch_size), mesh.size)
  b = build(config, mesh=mesh)
  tc, main = config.train, parallel.is_main_process()
  prepare_workdir(config, workdir)
  ckpt = ckpt_lib.Checkpointer(workdir, keep=int(tc.keep_checkpoints))
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  state, step = b["state"], 0
  best = math.inf
  if ckpt.latest_step() is not None:
    step, state, meta = ckpt.restore(state)
    ckpt.drop_best_after(step)
    bv = ckpt.best_value()
    best = math.inf if bv is None else bv
    if main:
      done = " (training finished: evaluating only)" if step >= int(tc.num_steps) else ""
      print(f"[geogen] resuming {workdir} from step {step}{done}", flush=True)
  if main:
    truncate_metrics(metrics_path, step)
  writer = MetricsWriter(metrics_path, main)
  chunk_fn = make_chunk_fn(b, tc)
  with_data = needs_data(b["family"])
  if with_data:
    order = BatchOrder(b["dataset"].train.shape[0], int(tc.batch_size), int(config.seed))
    train_np = b["dataset"].train
  num_steps = int(tc.num_steps)
  bar = _progress_bar(config, step, main)
  t_train, steps_timed, first = 0.0, 0, True
  last_val = None
  t_log, step_log = time.time(), step
  try:
    while step < num_steps:
      end = chunk_end(step, tc)
      k = end - step
      t0 = time.time()
      steps = parallel.replicate(jnp.arange(step, end, dtype=jnp.int32), b["mesh"])
      if with_data:
        batches = parallel.shard_batch(train_np[order.indices(step, k)], b["mesh"],
                                       batch_axis=1)
        state, metrics = chunk_fn(state, b["rest"], batches, steps)
      else:
        state, metrics = chunk_fn(state, b["rest"], steps)
      metrics = jax.device_get(metrics)
      t1 = time.time()
      dt = t1 - t0
      if not first:  # the first chunk includes compilation
        t_train, steps_timed = t_train + dt, steps_timed + k
      first = False
      for i in range(k):
        s = step + i + 1
        if s % int(tc.log_every) == 0 or s == num_steps:
          now = t0 + dt * (i + 1) / k  # steps of a chunk share its wall time evenly
          sps = (s - step_log) / max(now - t_log, 1e-9)
          t_log, step_log = now, s
          rec = {"step": s, **{n: float(np.asarray(v)[i]) for n, v in metrics.items()},
                 "steps_per_sec": sps, "time": now}
          writer.write(rec)
          if bar is not None:
            bar.set_postfix(loss=f"{rec['loss']:.4g}", refresh=False)
      losses = np.asarray(metrics["loss"])
      if not np.all(np.isfinite(losses)):
        bad = step + 1 + int(np.argmax(~np.isfinite(losses)))
        raise FloatingPointError(f"non-finite training loss at step {bad}; lower train.lr "
                                 "or check the data (metrics.jsonl has the history)")
      t_log += time.time() - t1  # host-side bookkeeping is not training time
      step = end
      if bar is not None:
        bar.update(k)
        if step == num_steps:  # done: keep the final evaluation out of the bar's rate
          bar.close()
          bar = None
      if step % int(tc.eval_every) == 0 or step == num_steps:
        t_e = time.time()
        last_val = validation_metric(b, config, state)
        rec = {"step": step, **{n: v for n, v in last_val.items() if n != "metric"},
               "eval_time_s": time.time() - t_e}
        writer.write(rec)
        if last_val["metric"] < best:
          best = last_val["metric"]
          ckpt.save_best(step, state, {"step": step, **_clean(last_val)}, best)
          ckpt.best.wait_until_finished()  # best on disk before the latest that follows it
        t_log += time.time() - t_e  # exclude evaluation from steps/s
      if step % int(tc.ckpt_every) == 0 or step == num_steps:
        ckpt.save_latest(step, state, {"step": step})
  finally:
    if bar is not None:
      bar.close()
    ckpt.wait()
  return {"build": b, "state": state, "step": step, "ckpt": ckpt, "last_val": last_val,
          "steps_per_sec": steps_timed / t_train if t_train > 0 else None,
          "train_time_s": t_train}


def train_and_evaluate(config, workdir: str, mesh=None) -> dict:
  """Train (resuming if possible), evaluate the best EMA parameters, write eval.json and
  plots.  mesh: default all devices.  -> the eval.json dict."""
  t_start = time.time()
  parallel.maybe_initialize_distributed()
  config = gconfig.validate(config)
  r = train(config, workdir, mesh)
  b, ckpt, state = r["build"], r["ckpt"], r["state"]
  chosen, val = r["step"], r["last_val"]
  best_step = ckpt.best_step()
  if best_step is not None and best_step != r["step"]:
    chosen, state, meta = ckpt.restore(state, which="best")
    val = None
  main = parallel.is_main_process()
  if main:
    print(f"[geogen] evaluating the EMA parameters of step {chosen}", flush=True)
  results = final_evaluation(b, config, state, val)
  results.update(
      num_steps=int(config.train.num_steps), checkpoint_step=int(chosen),
      steps_per_sec=r["steps_per_sec"], train_time_s=r["train_time_s"],
      wall_time_s=time.time() - t_start, num_devices=int(b["mesh"].size),
      platform=jax.devices()[0].platform, manifold=config.manifold, model=config.model,
      data=config.data.name if needs_data(b["family"]) else None,
      target=config.target or None, num_params=int(sum(np.size(x) for x in
                                                jax.tree_util.tree_leaves(state["params"]))))
  plot_files = []
  if main and int(config.eval.num_plot_samples) > 0:
    from geogen import plots
    t_p = time.time()
    plot_files = plots.make_plots(config, b, state, workdir)
    results["plot_time_s"] = time.time() - t_p
    results["wall_time_s"] = time.time() - t_start
  results["plots"] = plot_files
  if main:
    _write_json_atomic(os.path.join(workdir, "eval.json"), _clean(results))
  ckpt.close()
  return results


# ============================================================================ loading a run
def load_run(workdir: str, which: str = "best", load_dataset: bool = False, overrides=()):
  """(config, build dict, state, step) of a trained run; `which` 'best' falls back to
  'latest' when there is no best checkpoint.  The dataset is not loaded unless asked.
  `overrides` ('key=value') may change only keys that leave the trained parameters
  unchanged (config.RESUMABLE_CHANGES: sampler and evaluation settings)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: is {workdir!r} a training workdir?")
  with open(path) as f:
    config = gconfig.from_json(f.read())
  if overrides:
    new = gconfig.from_json(gconfig.to_json(config))
    with new.unlocked():
      gconfig.apply_overrides(new, overrides)
    gconfig.validate(new)
    blocking = gconfig.blocking_changes(config, new)
    if blocking:
      raise gconfig.ConfigError(f"cannot change {', '.join(blocking)} of a trained run (only "
                                f"keys starting with {', '.join(gconfig.RESUMABLE_CHANGES)})")
    config = new
  b = build(config, load_dataset=load_dataset)
  ckpt = ckpt_lib.Checkpointer(workdir, keep=int(config.train.keep_checkpoints),
                               async_save=False)
  if which == "best" and ckpt.best_step() is None:
    which = "latest"
  step, state, _ = ckpt.restore(b["state"], which=which)
  ckpt.close()
  return config, b, state, step


def sample_points(b: dict, state, key, num: int, batch_size: int) -> np.ndarray:
  """`num` samples of the EMA model, drawn in chunks of `batch_size` (all chunks the same
  size, so one compilation).  -> numpy array (num, *M.shape)."""
  model = ema_model(b, state)
  bs = max(1, min(int(batch_size), int(num)))
  out, done, i = [], 0, 0
  while done < num:
    x = b["family"].sample(model, jax.random.fold_in(key, i), bs)
    out.append(parallel.to_host(x))
    done, i = done + bs, i + 1
  return np.concatenate(out, axis=0)[:num]
