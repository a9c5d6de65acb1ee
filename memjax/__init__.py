"""memjax: memorization versus generalization in deep networks, in JAX.

One job per module, from the bottom of the import ladder up (a module imports
only modules listed before it; tests/test_structure.py checks it):

* ``keys``: every random key, from (seed, stream, step); ``validation``,
  ``chunking``, ``stats``, ``cost``: config checks, chunked maps, standard
  errors, a model's multiply-adds counted from its layer shapes.
* ``checkpointing``: workdirs, orbax resume, fingerprinted files.
* ``data``: datasets as in-memory arrays (embedded MNIST-5k and digits; tfds,
  with the records' original order); ``randomization``: Zhang et al.'s
  randomization tests, Arpit et al.'s noise, symmetric and asymmetric label
  noise.
* ``conv``, ``models``: fast CPU convolutions; the Flax NNX models of both
  papers.
* ``complexity``, ``regularizers``, ``sharding``: critical samples (LASS),
  explicit regularizers, seeds over devices.
* ``training``: the model and optimizer as pure jitted functions of
  seed-stacked pytrees (``Trainer``); ``hooks`` and ``engine``: the one
  training loop (``engine.fit``) and its per-epoch hooks (metrics.jsonl, kept
  states, measurements).
* ``per_example``, ``presentations``, ``sensitivity``, ``memorization``,
  ``sharpness``: EL2N/GraNd/forgetting, forgetting per presentation, loss
  sensitivity, memorization/influence/C-scores, Hessian sharpness.
* ``expressivity``, ``kernels``: Theorem 1's network and minimum-norm solutions.
* ``studies``, ``kernel_study``, ``regularization_study``,
  ``regularization_sweep``, ``pruning``, ``atlas``: the studies behind the
  experiments.
* ``reporting``, ``report_pages``, ``published``, ``score_files``,
  ``memorization_analysis``: results files, tables, figures, published score
  formats, the reproduction report; ``cli``: flags -> frozen configs, and the
  experiments' command line (``cli.main``) and in-process runs
  (``cli.execute``).
"""
