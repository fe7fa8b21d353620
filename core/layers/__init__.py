"""Ensemble layers: BatchEnsemble (shared slow weight, per-member rank-1 fast weights), deep
ensembles computed together (stacked independent members), and ensemble normalisation.

Notation: M = ensemble size, B = examples per member, N = M * B.

Two activation layouts are used (see `core.network` for where each is used):

* member-major: the ensemble is stacked on the batch dimension, shape (M * B, C, ...);
  rows m * B ... (m + 1) * B - 1 belong to member m. `BELinear`, `BEConv2d`, `DeepLinear`,
  `BEBatchNorm2d` and `MemberBatchNorm2d` (default) take and return this layout.
* channel-stacked: the ensemble is stacked on the channel dimension, shape (B, M * C, H, W);
  channels m * C ... (m + 1) * C - 1 belong to member m. `DeepConv2d` and
  `MemberBatchNorm2d(channel_stacked=True)` use it, so a deep trunk runs as grouped
  convolutions (groups = M) without any transposes between its layers. `PackedConv2d` and
  `PackedLinear` (Packed-Ensembles) use it too, their channels widened and grouped into
  M * gamma groups (`packed`).

The same two deep layers also take a third form, a member list: a list of M tensors
(B, C, H, W), element m member m's activations. They then loop over the members, each an
ordinary convolution / BatchNorm on member m's slice of the same parameters and statistics
(`weight[m]`, `bias[m]`, channel block m of the running statistics): one parameter layout, two
computations, chosen per device by `core.network` (`deep_impl`).

Fast weights (`alpha`, `gamma`) are the only parameters named `alpha` / `gamma`: other code
(optimizer groups: lower learning rate, no weight decay) finds them by that name suffix.
Normalisation layers name their per-member affine parameters `weight` / `bias`.

Files, one concept each: `batch_ensemble` (BELinear, BEConv2d, fast-weight init), `deep`
(DeepLinear, DeepConv2d), `packed` (PackedConv2d, PackedLinear), `mimo` (MIMOConv2d,
MIMOLinear and MIMO's training batch), `norm` (BEBatchNorm2d, MemberBatchNorm2d), `shapes`
(the argument and layout checks they share) and `fused` (the fused BatchEnsemble
conv-norm-ReLU, an optimisation with the same numbers: the model can be understood without
it).
"""

from core.layers.batch_ensemble import BEConv2d, BELinear, init_fast_weight
from core.layers.deep import DeepConv2d, DeepLinear
from core.layers.fused import BEConvNormReLU, be_conv_norm_relu
from core.layers.mimo import MIMOConv2d, MIMOLinear, mimo_align, mimo_batch, mimo_rows
from core.layers.norm import BEBatchNorm2d, MemberBatchNorm2d
from core.layers.packed import PackedConv2d, PackedLinear, packed_channels

__all__ = [
    "BEConvNormReLU",
    "BEBatchNorm2d",
    "BEConv2d",
    "BELinear",
    "DeepConv2d",
    "DeepLinear",
    "MIMOConv2d",
    "MIMOLinear",
    "MemberBatchNorm2d",
    "PackedConv2d",
    "PackedLinear",
    "be_conv_norm_relu",
    "init_fast_weight",
    "mimo_align",
    "mimo_batch",
    "mimo_rows",
    "packed_channels",
]
