"""memjax: memorization versus generalization in deep networks, in JAX.

Modules: ``data`` (datasets), ``randomization`` (Zhang et al.'s randomization
tests), ``models`` (Flax NNX models by name), ``training`` (many-seed vmapped
training), ``checkpointing`` (orbax resume), ``studies`` (one run per
condition), ``reporting`` (results.json, tables, figures), ``cli`` (flags).
"""
