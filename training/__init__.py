"""Training code for latentgraph's own small models (synthetic shapes dataset, checker, trainers).

Only `shapes` (torch, numpy, PIL) is used by the product, by the LG_ShapesImages node and the
adherence benchmark; the trainers need diffusers/transformers/tokenizers (the `test` extra) and
exist to produce the weights latentgraph ships.
"""
