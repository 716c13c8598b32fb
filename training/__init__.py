"""Training code for latentgraph's own small models (synthetic shapes dataset, checker, trainers).

Nothing here is imported by the executor or the nodes: it needs diffusers/transformers/tokenizers
(the `test` extra) and exists to produce the weights latentgraph ships.
"""
