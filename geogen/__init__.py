"""geogen: generative models on manifolds in JAX (the learning half; geometry is `manifolds`).

Modules (imported on demand, so ``import geogen`` stays cheap):

* ``geogen.config``       load / override / validate configs (schema: configs/defaults.py)
* ``geogen.data``         datasets: earth (S^2), RNA torsions (T^7), .npy files, synthetic
* ``geogen.models``       model families (``get_family(name)``): diffusion, ...
* ``geogen.nets``         flax.nnx vector-field networks
* ``geogen.integrators``  ODE / SDE integrators on manifolds
* ``geogen.likelihood``   change-of-variables log-likelihoods
* ``geogen.training``     the training loop (``train_and_evaluate(config, workdir)``)
* ``geogen.checkpoint``   orbax checkpoints (latest + best)
* ``geogen.parallel``     data parallelism over devices / hosts
* ``geogen.plots``        samples and densities in each manifold's natural chart

Command line: ``python train.py --config configs/<name>.py --workdir runs/<name>`` and
``python sample.py --workdir runs/<name> --num_samples 10000 --output samples.npy``.
"""

__version__ = "0.1.0"
