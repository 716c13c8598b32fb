"""Training code for latentgraph's own small models: the checker that grades images and the
trainers, on the synthetic coloured-shapes dataset (``nodes/shapes/dataset.py``, which sits below
both the LG_ShapesImages node and this package).

Nothing in the product imports this package: the checker serves the adherence benchmark and the
tests; the trainers need diffusers/transformers/tokenizers and exist to produce the weights
latentgraph ships.
"""
