"""memjax: memorization versus generalization in deep networks, in JAX.

One job per module:

* ``data``: datasets as in-memory arrays (embedded MNIST-5k and digits; tfds).
* ``randomization``: Zhang et al.'s randomization tests and Arpit et al.'s noise.
* ``models``: the Flax NNX models of both papers, by name.
* ``regularizers``: explicit regularizers (weight decay, dropout, noise, crops).
* ``training``: many-seed vmapped training; ``sharding``: seeds over devices.
* ``checkpointing``: orbax resume and workdir guarding.
* ``studies``: one S-seed run per randomization condition.
* ``per_example``, ``sensitivity``, ``memorization``: per-example quantities,
  loss sensitivity and its Gini, memorization/influence/C-scores.
* ``complexity``, ``sharpness``: critical samples (LASS) and Hessian sharpness.
* ``expressivity``, ``kernels``: Theorem 1's network and minimum-norm solutions.
* ``reporting``, ``cli``: results files, tables, figures; flags -> configs.
"""
