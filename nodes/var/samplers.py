"""LG_VARSampler and LG_VARInpaint: one node in the editor, K cached scale steps at run time.

Both expand into  LG_VARStart -> LG_VARScaleStep x K -> LG_VARDecodeState (+ token maps), so every
scale is an ordinary node: cached by signature, reported with a preview, and shared with a
hand-unrolled graph of the same steps (graphs/var_stepwise.json). Everything that can be checked
before sampling is checked here, so a bad input is reported against this node, not a step inside.
"""

from __future__ import annotations

from typing import Any

from ...executor.graph_builder import GraphBuilder, NodeRef
from ...executor.node import Expand, Inputs, Node, Outputs, ParentInput
from ...executor.types import Image, Mask
from .checks import (
    check_batch,
    check_pair,
    check_schedules_match,
    check_top_k,
    checked_image,
    checked_mask,
    image_side,
    parse_class_labels,
)
from .scale_nodes import (
    cfg_input,
    class_labels_input,
    more_smooth_input,
    seed_input,
    top_k_input,
    top_p_input,
)
from .sockets import TokenMapsSocket, VARModelSocket, VQVAESocket

CATEGORY = "latentgraph/var"
P = ParentInput  # reads as "the expanding node's own input"
STEP_SETTINGS = ("cfg", "top_k", "top_p", "more_smooth")


class SamplerOutputs(Outputs):
    image: Image
    token_maps: TokenMapsSocket


def scale_chain(g: GraphBuilder, num_scales: int, **forcing: Any) -> tuple[NodeRef, NodeRef]:
    """Start, one step per scale, then decode; returns the (image, token maps) nodes.

    The ids and inputs match a hand-built chain of the same nodes, so both share the cache.
    """
    state = g.node("LG_VARStart", id="start", var=P("var"), class_labels=P("class_labels"),
                   seed=P("seed"))
    for scale in range(num_scales):
        state = g.node("LG_VARScaleStep", id=f"scale{scale}", state=state, var=P("var"),
                       vqvae=P("vqvae"), **{name: P(name) for name in STEP_SETTINGS}, **forcing)
    image = g.node("LG_VARDecodeState", id="decode", vqvae=P("vqvae"), state=state)
    tokens = g.node("LG_VARStateToTokenMaps", id="tokens", vqvae=P("vqvae"), state=state)
    return image, tokens


class SamplingInputs(Inputs):
    """What both samplers take: the models, the classes, and how each scale is sampled."""

    vqvae: VQVAESocket
    var: VARModelSocket
    class_labels: str = class_labels_input()
    seed: int = seed_input()
    cfg: float = cfg_input()
    top_k: int = top_k_input()
    top_p: float = top_p_input()
    more_smooth: bool = more_smooth_input()


class VARSampler(Node):
    """Class-conditional image generation with VAR: next-scale prediction from 1x1 to the full
    token map, with CFG, top-k and top-p. Expands into one visible, cached node per scale."""

    class_type = "LG_VARSampler"
    category = CATEGORY

    In = SamplingInputs
    Out = SamplerOutputs

    def run(self, x: SamplingInputs) -> Expand:
        check_pair(x.var, x.vqvae)
        check_top_k(x.top_k, x.var)
        labels = parse_class_labels(x.class_labels, x.var)
        check_batch(len(labels), image_side(x.vqvae, x.var.config.patch_nums), self.ctx.limits)
        g = GraphBuilder()
        image, tokens = scale_chain(g, len(x.var.config.patch_nums))
        return Expand(g.build(), ((image.id, 0), (tokens.id, 0)))


class VARInpaint(Node):
    """Zero-shot in-painting / out-painting (VAR paper, Fig. 8): at every scale the tokens of the
    image outside the mask are teacher-forced and only the masked region is sampled. Expands into
    a quantize node and one visible, cached node per scale."""

    class_type = "LG_VARInpaint"
    category = CATEGORY

    class In(SamplingInputs):
        image: Image
        mask: Mask

    Out = SamplerOutputs

    def run(self, x: In) -> Expand:
        check_pair(x.var, x.vqvae)
        check_schedules_match(x.var, x.vqvae)
        check_top_k(x.top_k, x.var)
        batch = len(parse_class_labels(x.class_labels, x.var))
        side = image_side(x.vqvae, x.var.config.patch_nums)
        check_batch(batch, side, self.ctx.limits)
        checked_image(x.image, side, batch)
        checked_mask(x.mask, side, batch)
        g = GraphBuilder()
        reference = g.node("LG_VQVAEQuantize", id="reference", vqvae=P("vqvae"), image=P("image"))
        image, tokens = scale_chain(g, len(x.var.config.patch_nums), reference=reference,
                                    mask=P("mask"))
        return Expand(g.build(), ((image.id, 0), (tokens.id, 0)))


NODES = [VARSampler, VARInpaint]
