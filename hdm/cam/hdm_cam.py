"""HDM-CAM: Grad-CAM++ weighted by Hessian curvature and by Haar-wavelet subbands across layers.

Kwon & Ro, "High-Precision Image Restoration via Hessian-based Grad-CAM++ and Wavelet-Fused
Multiscale Activation Maps" (2025); equations (4)-(14). docs/hdm_cam.md maps every equation to the
code below and records each decision the paper leaves open. In short, for each target layer ``l``
with activation ``A`` ``(B, K, h, w)`` and gradient ``g = dS/dA`` of the class logit ``S``
(explaining ``Y = exp(S)``, see :mod:`hdm.ops.derivatives`; ``target="softmax"`` explains the class probability
instead, :func:`softmax_score_derivatives`):

1. derivative maps ``|d^n Y/dA^n| / exp(S) = |g|^n``, n = 2, 3, 4              (stage 1)
2. channel Hessian weight ``w^(2)_k``                                          (eqs. 4-7)
3. band weights: a J-level Haar DWT of the 3rd/4th-order maps, band energies
   ``gamma = lambda^(3) E(|g|^3)``, ``delta = lambda^(4) E(|g|^4)``, normalised over the four
   bands of each level; ``beta = (W^(3) + W^(4)) / 2``                          (eqs. 8-10)
4. per channel k and subband (j, b) of the DWT of ``A``:
   ``w = beta_{j,b} * sum_{p in (j,b)} ReLU(G_p) * tr H_p`` with ``G = DWT(g)`` (the exact gradient
   with respect to the wavelet coefficients, the DWT being orthonormal) and
   ``tr H_p = w^(2)_k * G_p^2``                                                  (eq. 11, eq. 6)
5. ``w / sum_{l,k,j,b} |w|``                                                     (eq. 12)
6. ``H_k = sum_j alpha_j sum_b w_{k,j,b}``: one weight per channel                (eq. 13)
7. ``M^(l) = sum_k H_k A_k`` and ``A_c = ReLU(sum_l upsample(M^(l)))``            (eq. 14)

Steps 6-7 are eqs. (13)-(14) as written (``apply_to="channels"``, the default). The other reading the paper's
prose allows, ``apply_to="subbands"``, multiplies each subband of ``A`` by its own weight and inverts the DWT:
``M^(l) = IDWT(sum_k alpha_j w_{k,j,b} DWT(A_k)_{j,b})``. Behind a global-average-pooled head it keeps only
the coarsest LL band of the last layer (a constant map on a 4x4 ``layer4``): docs/hdm_cam.md, "Two readings".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn as nn

from ..errors import BadArgument
from ..ops.derivatives import derivative_map, hessian_weight
from ..ops.wavelets import BANDS, haar_dwt2, haar_wavedec2, haar_waverec2, max_level
from .base import RESNET_LAYERS, BaseCAM, CAMResult, normalize_maps, upsample_maps
from .channel_cam import combine_layer_maps

__all__ = ["HDMCAM", "HDMResult", "TUNED", "fuse_scale_maps", "ALPHA_MODES", "LAYER_FUSIONS", "TARGETS", "APPLY_TO",
           "softmax_score_derivatives", "scale_weights", "band_energy_weights", "default_target_layers"]

#: Eq. (13)'s scale-weight modes, plus "equal" (all 1) for ablations.
ALPHA_MODES = ("exp", "inverse", "learned", "equal")
#: What eq. (14) multiplies by eq. (13)'s weights: each channel's activation map (as written) or each subband of it.
APPLY_TO = ("channels", "subbands")
_BAND_INDEX = {name: i for i, name in enumerate(BANDS)}
#: HDMCAM keyword arguments (and ``target_layers``): the end of the CAM benchmark's ablation ladder, each
#: component chosen on the validation split (``docs/results/cam_ladder_choices.json``; the rule and how each
#: setting departs from the paper: docs/cam_benchmark.md, docs/hdm_cam.md). ``HDMCAM()``'s own defaults are
#: the paper's method.
TUNED = {"target": "exp", "hessian": "none", "bands": "equal", "alpha": "equal", "layer_fusion": "product",
         "target_layers": list(RESNET_LAYERS)}
#: Channels are processed in chunks of about this many gradient elements (speed, not results).
_CHUNK_ELEMENTS = 1 << 19


#: The explained score ``Y`` of the derivatives: the paper's ``exp(S)`` or the class probability ``softmax(S)_c``.
TARGETS = ("exp", "softmax")
#: The softmax target needs one backward pass per class: refused above this many classes.
MAX_SOFTMAX_CLASSES = 64


class _ClassJacobians(list):
    """Per target layer the derivatives of every logit ``(B, C, K, h, w)``, with ``probs`` ``(B, C)`` = softmax of
    the logits and ``classes`` ``(B,)`` the explained class (what :meth:`HDMCAM.compute` needs for the
    softmax target)."""

    def __init__(self, jacobians, probs: torch.Tensor, classes: torch.Tensor):
        super().__init__(jacobians)
        self.probs, self.classes = probs, classes


def softmax_score_derivatives(u: torch.Tensor, probs: torch.Tensor, classes: torch.Tensor) -> dict[int, torch.Tensor]:
    """Scale-free derivatives ``(d^n p_c / dx^n) / p_c``, n = 1..4, of the class probability ``p = softmax(S)``
    along coordinates ``x`` in which the logits are locally linear (a ReLU head): ``u`` ``(B, C, ...)`` holds
    ``dS_i/dx`` for every class ``i`` and coordinate.

    Along one coordinate ``log p_c(t) = S_c + t u_c - log sum_i exp(S_i + t u_i)``, whose derivatives are
    ``h_1 = u_c - E_p[u]`` and ``h_n = -kappa_n`` (the n-th cumulant of ``u`` under ``p``: ``kappa_2 = mu_2``,
    ``kappa_3 = mu_3``, ``kappa_4 = mu_4 - 3 mu_2^2``, central moments). Then ``p^(n) / p`` is the complete Bell
    polynomial: ``h1``, ``h1^2 + h2``, ``h1^3 + 3 h1 h2 + h3``, ``h1^4 + 6 h1^2 h2 + 4 h1 h3 + 3 h2^2 + h4``.
    ``probs`` ``(B, C)``, ``classes`` ``(B,)``; returns ``{n: (B, ...)}``."""
    q = probs.to(u.dtype).reshape(probs.shape + (1,) * (u.dim() - 2))
    d = u - (q * u).sum(dim=1, keepdim=True)
    index = classes.to(u.device).long().reshape((-1, 1) + (1,) * (u.dim() - 2)).expand((-1, 1) + u.shape[2:])
    h1 = d.gather(1, index)[:, 0]
    d2 = d * d
    m2, m3, m4 = (q * d2).sum(dim=1), (q * d2 * d).sum(dim=1), (q * d2 * d2).sum(dim=1)
    h2, h3, h4 = -m2, -m3, -(m4 - 3 * m2 * m2)
    return {1: h1, 2: h1 * h1 + h2, 3: h1 ** 3 + 3 * h1 * h2 + h3,
            4: h1 ** 4 + 6 * h1 * h1 * h2 + 4 * h1 * h3 + 3 * h2 * h2 + h4}


def default_target_layers(model: nn.Module) -> list[str]:
    """``layer1..layer4`` for torchvision ResNets; other models must name their layers."""
    if all(isinstance(getattr(model, n, None), nn.Module) for n in RESNET_LAYERS):
        return list(RESNET_LAYERS)
    raise BadArgument(
        f"{type(model).__name__} has no layer1..layer4 (a torchvision ResNet's stages): pass target_layers explicitly"
    )


def scale_weights(levels: int, mode: str | Sequence[float] = "exp", theta: torch.Tensor | None = None,
                  *, dtype=torch.float64, device=None) -> torch.Tensor:
    """Eq. (13)'s ``alpha_j`` for ``j = 1..levels`` -> ``(levels,)``.

    ``"exp"``: ``exp(-j)`` (texture-rich data); ``"inverse"``: ``1/j`` (simple structure);
    ``"learned"``: ``sigmoid(theta_j)``; ``"equal"``: 1; or an explicit sequence of ``>= levels`` values.
    ``levels = 0`` (a map too small for a DWT) gives ``[1.]``.
    """
    if levels == 0:
        return torch.ones(1, dtype=dtype, device=device)
    j = torch.arange(1, levels + 1, dtype=dtype, device=device)
    if isinstance(mode, str):
        if mode == "exp":
            return torch.exp(-j)
        if mode == "inverse":
            return 1.0 / j
        if mode == "equal":
            return torch.ones_like(j)
        if mode == "learned":
            if theta is None:
                raise BadArgument("alpha='learned' needs theta (one value per level)")
            theta = torch.as_tensor(theta, dtype=dtype, device=device).flatten()
            if theta.numel() < levels:
                raise BadArgument(f"alpha='learned' needs theta for {levels} levels, got {theta.numel()} values")
            return torch.sigmoid(theta[:levels])
        raise BadArgument(f"alpha must be one of {ALPHA_MODES} or a sequence of numbers, got {mode!r}")
    values = torch.as_tensor(mode, dtype=dtype, device=device).flatten()
    if values.numel() < levels:
        raise BadArgument(f"alpha needs {levels} values (one per level), got {values.numel()}")
    return values[:levels]


def band_energy_weights(maps: torch.Tensor, levels: int, gain: torch.Tensor):
    """Eqs. (9)-(10) for one derivative order.

    For each level ``j`` the four bands of a one-level Haar DWT of ``LL_{j-1}`` (``LL_0 = maps``) get
    ``gamma_{j,b} = gain_b * mean_p |coefficient_p|`` and ``W_{j,b} = gamma_{j,b} / sum_b gamma_{j,b}``.

    Args: ``maps`` ``(B, K, h, w)`` non-negative derivative maps; ``gain`` ``(4,)`` = ``lambda_b``.
    Returns: ``W`` ``(B, K, levels, 4)`` and the subbands ``[(LL_j, LH_j, HL_j, HH_j) for j = 1..levels]``.
    """
    weights, subbands = [], []
    ll = maps
    for _ in range(levels):
        bands = haar_dwt2(ll)
        ll = bands[0]
        gamma = torch.stack([b.abs().mean(dim=(-2, -1)) for b in bands], dim=-1) * gain
        weights.append(gamma / gamma.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(gamma.dtype).tiny))
        subbands.append(bands)
    if not weights:
        return maps.new_zeros(maps.shape[:2] + (0, 4)), subbands
    return torch.stack(weights, dim=-2), subbands


def fuse_scale_maps(components: Sequence[torch.Tensor], alphas: Sequence[torch.Tensor], size: tuple[int, int],
                    fusion: str = "sum") -> torch.Tensor:
    """Eqs. (13)-(14) from per-scale maps: ``M^(l) = sum_j alpha_j C^(l)_j`` and the CAM ``(B, H, W)`` in [0, 1].

    ``components[l]`` ``(B, J_l, h_l, w_l)`` (:attr:`HDMResult.scale_maps`), ``alphas[l]`` ``(>= J_l,)``.
    ``fusion="sum"``: ``normalize(ReLU(sum_l upsample(M^(l))))`` (eq. 14); ``"mean"``: pytorch-grad-cam's
    mean of per-layer normalised maps; ``"product"``: their product (RefineCAM). Differentiable in ``alphas``
    (used to fit theta)."""
    return _fuse_layer_maps([_mix_scales(C, alpha) for C, alpha in zip(components, alphas)], size, fusion)


def _mix_scales(C: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``M = sum_j alpha_j C_j``: ``(B, J, h, w)``, ``(>= J,)`` -> ``(B, h, w)``."""
    return torch.einsum("j,bjhw->bhw", alpha[:C.shape[1]].to(C.dtype), C)


#: Eq. (14)'s layer fusions: the paper's sum, pytorch-grad-cam's mean, RefineCAM's product.
LAYER_FUSIONS = ("sum", "mean", "product")


def _fuse_layer_maps(maps: list[torch.Tensor], size: tuple[int, int], fusion: str) -> torch.Tensor:
    """Layer maps ``(B, h_l, w_l)`` -> the CAM ``(B, H, W)`` in [0, 1] (``N`` = per-map min-max normalisation,
    ``U`` = bilinear upsampling to ``size``):

    - ``"sum"`` (eq. 14): ``N(ReLU(sum_l U(M_l)))``;
    - ``"mean"`` (pytorch-grad-cam's multi-layer mean): ``N(mean_l U(N(ReLU(M_l))))``;
    - ``"product"`` (RefineCAM's fusion in pytorch-grad-cam): ``N(prod_l N(U(N(ReLU(M_l)))))``, each layer's
      map normalised to [0, 1] before the product (a pixel must be salient in every layer to survive)."""
    if fusion == "sum":
        return normalize_maps(sum(upsample_maps(M, size) for M in maps).clamp_min(0))
    if fusion == "product":
        scaled = [normalize_maps(upsample_maps(normalize_maps(M.clamp_min(0)), size)) for M in maps]
        return normalize_maps(torch.stack(scaled).prod(dim=0))
    return combine_layer_maps([M.clamp_min(0) for M in maps], size)


@dataclass
class HDMResult(CAMResult):
    """:class:`CAMResult` plus what HDM-CAM computed on the way, per target layer name.

    All derivative quantities are scale-free: multiply by ``exp(scores)`` for the derivatives of
    ``Y = exp(S)`` themselves, or by the class probability for ``target="softmax"`` (the factor cancels in
    every normalised weight).

    Attributes:
        levels: DWT levels ``J`` used at the layer.
        alpha: ``(J,)`` scale weights of eq. (13).
        hessian_weights: ``(B, K)`` ``w^(2)`` (eq. 5, or eq. 7 with ``hessian="diag"``).
        derivative_maps: ``{2|3|4: (B, K, h, w)}`` ``|d^n Y/dA^n| / exp(S)``.
        derivative_subbands: ``{2|3|4: [(LL_j, LH_j, HL_j, HH_j) for j = 1..J]}``, each ``(B, K, h_j, w_j)``
            (level ``j`` transforms ``LL_{j-1}``; the 3rd/4th-order ones feed eq. 9).
        band_weights: ``{"W3"|"W4"|"beta": (B, K, J, 4)}`` over bands ``LL, LH, HL, HH`` (eqs. 9-10).
        subband_weights: ``{(j, band): (B, K)}`` the terms ``alpha_j w`` of eqs. (11)-(13) per subband of the DWT
            partition (``LL`` only at level ``J``): their sum over subbands is the channel weight ``H_k``
            (``apply_to="channels"``), or each multiplies its subband of ``A`` (``"subbands"``).
        scale_maps: ``(B, max(J, 1), h, w)`` the per-scale maps ``C_j`` with ``M = sum_j alpha_j C_j``
            (before the ReLU; :func:`fuse_scale_maps` turns them into the CAM for any alpha): with
            ``apply_to="channels"`` ``C_j = sum_k (sum_b w_{k,j,b}) A_k``, with ``"subbands"`` the inverse DWT of
            the weighted level-``j`` subbands.
        activations: ``(B, K, h, w)`` the layer's activation ``A`` (with ``keep_maps`` only).
    """

    levels: dict = field(default_factory=dict)
    alpha: dict = field(default_factory=dict)
    hessian_weights: dict = field(default_factory=dict)
    derivative_maps: dict = field(default_factory=dict)
    derivative_subbands: dict = field(default_factory=dict)
    band_weights: dict = field(default_factory=dict)
    subband_weights: dict = field(default_factory=dict)
    scale_maps: dict = field(default_factory=dict)
    activations: dict = field(default_factory=dict)


def _np(t: torch.Tensor, factor=None):
    """float32 numpy copy, optionally times a float64 ``factor`` (undoing the gradient scaling)."""
    if factor is None:
        return t.detach().float().cpu().numpy()
    return (t.detach().double().cpu().numpy() * factor).astype("float32")


class HDMCAM(BaseCAM):
    """HDM-CAM.

    Args:
        model: classifier; its head after the target layers should be piecewise linear (ReLU
            networks), for which the closed-form derivatives are exact (a warning says otherwise).
        target_layers: modules or names; ``None`` = ``layer1..layer4`` of a torchvision ResNet.
        alpha: eq. (13) mode - ``"exp"`` (default), ``"inverse"``, ``"learned"`` (with ``theta``),
            ``"equal"``, or explicit per-level values.
        theta: ``(J_max,)`` logits for ``alpha="learned"``.
        levels: DWT levels per layer (capped at each map's :func:`~hdm.ops.wavelets.max_level`).
        hessian: ``"diag"`` (eq. 7, the paper's efficient form; default) or ``"eigen"`` (eqs. 4-5:
            multi-scale smoothed 2x2 Hessians, about 2x the extra cost; see docs/hdm_cam.md), or
            ``"none"`` (``w^(2) = 1``: the wavelet term alone, an ablation).
        sigmas: Gaussian scales of eq. (4), in feature-map pixels.
        band_gain: ``lambda_b`` of eq. (9) for bands ``(LL, LH, HL, HH)``.
        bands: ``"weighted"`` (eqs. 9-11, default), ``"equal"`` (every subband of a channel gets
            the channel's total eq. 11 weight: the method then reduces to a channel-weighted CAM), or
            ``"modulate"`` (the channel's total eq. 11 weight times ``4 beta_{j,b}``: eqs. 9-10 set
            the bands' relative emphasis, the gradient's own subband energies do not; see
            docs/cam_benchmark.md for why).
        target: the explained score ``Y`` whose derivatives feed eqs. (4)-(11): ``"exp"`` (default, the paper's and
            Grad-CAM++'s ``exp(S)``: ``d^n Y/dA^n = exp(S) g^n``) or ``"softmax"`` (the class probability, a smooth
            target with its own curvature: :func:`softmax_score_derivatives`, one backward pass per class).
            (The raw logit is no option: in a ReLU network its 2nd-4th derivatives are 0 and every weight vanishes.)
        layer_fusion: ``"sum"`` (eq. 14, default), ``"mean"`` (mean of per-layer normalised maps,
            as pytorch-grad-cam combines layers) or ``"product"`` (product of per-layer normalised maps, as
            pytorch-grad-cam's RefineCAM fuses them); exactly: :func:`_fuse_layer_maps`.
        apply_to: what eq. (14) weights: ``"channels"`` (default; eqs. 13-14 as written: the band and scale
            weights of a channel sum to one channel weight ``H_k``, and ``M = sum_k H_k A_k``) or ``"subbands"``
            (each subband of each channel's activation takes its own weight, then the inverse DWT). With
            ``bands="equal"`` and ``alpha="equal"`` the two are the same map.
    """

    needs_piecewise_linear = True

    def __init__(self, model: nn.Module, target_layers=None, *, alpha="exp", theta=None, levels: int = 2,
                 hessian: str = "diag", sigmas: Sequence[float] = (0.5, 1.0, 2.0),
                 band_gain: Sequence[float] = (1.0, 1.0, 1.0, 1.0), bands: str = "weighted",
                 layer_fusion: str = "sum", target: str = "exp", apply_to: str = "channels"):
        if target_layers is None:
            target_layers = default_target_layers(model)
        super().__init__(model, target_layers)
        if isinstance(alpha, str) and alpha not in ALPHA_MODES:
            raise BadArgument(f"alpha must be one of {ALPHA_MODES} or a sequence of numbers, got {alpha!r}")
        if alpha == "learned" and theta is None:
            raise BadArgument("alpha='learned' needs theta (one value per level)")
        if hessian not in ("eigen", "diag", "none"):
            raise BadArgument(f"hessian must be 'eigen', 'diag' or 'none', got {hessian!r}")
        if bands not in ("weighted", "equal", "modulate"):
            raise BadArgument(f"bands must be 'weighted', 'equal' or 'modulate', got {bands!r}")
        if layer_fusion not in LAYER_FUSIONS:
            raise BadArgument(f"layer_fusion must be one of {LAYER_FUSIONS}, got {layer_fusion!r}")
        if len(band_gain) != 4 or any(float(v) < 0 for v in band_gain):
            raise BadArgument(f"band_gain needs 4 non-negative values (LL, LH, HL, HH), got {band_gain!r}")
        if int(levels) < 0:
            raise BadArgument(f"levels must be >= 0, got {levels}")
        if target not in TARGETS:
            raise BadArgument(f"target must be one of {TARGETS}, got {target!r}")
        if apply_to not in APPLY_TO:
            raise BadArgument(f"apply_to must be one of {APPLY_TO}, got {apply_to!r}")
        if target == "softmax" and hessian == "eigen":
            raise BadArgument("hessian='eigen' needs the exp target (its neighbour coupling has a closed form only "
                              "for exp(S)); use hessian='diag' or 'none' with target='softmax'")
        self.target = target
        self.alpha, self.theta, self.levels = alpha, theta, int(levels)
        self.hessian, self.sigmas, self.band_gain = hessian, tuple(float(s) for s in sigmas), tuple(float(v) for v in band_gain)
        self.bands, self.layer_fusion, self.apply_to = bands, layer_fusion, apply_to

    def _gradients(self, scores, logits, acts, categories):
        if self.target == "exp":
            return super()._gradients(scores, logits, acts, categories)
        if any(c is None for c in categories):
            raise BadArgument("target='softmax' explains a class probability: give class indices as targets")
        if logits.shape[1] > MAX_SOFTMAX_CLASSES:
            raise BadArgument(f"target='softmax' needs one backward pass per class; the model has {logits.shape[1]} "
                              f"classes (at most {MAX_SOFTMAX_CLASSES}): use target='exp'")
        per_class = [torch.autograd.grad(logits[:, i].sum(), acts, retain_graph=i + 1 < logits.shape[1])
                     for i in range(logits.shape[1])]
        jacobians = [torch.stack([g[layer] for g in per_class], dim=1).detach() for layer in range(len(acts))]
        return _ClassJacobians(jacobians, torch.softmax(logits.detach().double(), dim=1),
                               torch.as_tensor(categories))

    def _softmax_subband_weights(self, u: torch.Tensor, probs, classes, J: int, gain: torch.Tensor,
                                 keep_maps: bool) -> dict:
        """:meth:`_subband_weights` for the softmax target; ``u`` ``(B, C, Kc, h, w)`` (scaled logit Jacobian).

        Pixel maps ``|p^(n)| / p`` for n = 2, 3, 4 (eqs. 7-10); in the wavelet domain (the logits are linear in the
        coefficients, with directions ``DWT(u)`` of each class) ``ReLU(p'/p) |p''/p|`` per coefficient (eq. 11)."""
        pixel = softmax_score_derivatives(u, probs, classes)
        d2, d3, d4 = pixel[2].abs(), pixel[3].abs(), pixel[4].abs()
        w2 = d2.new_ones(d2.shape[:2]) if self.hessian == "none" else d2.mean(dim=(-2, -1))  # eq. (7)
        keys, raw = [], []
        for j, band, coeff in haar_wavedec2(u, J).bands():
            keys.append((j, band))
            D = softmax_score_derivatives(coeff, probs, classes)
            raw.append(w2 * (D[1].clamp_min(0) * D[2].abs()).sum(dim=(-2, -1)))
        return self._band_weights(keys, raw, w2, lambda: d2, d3, d4, J, gain, keep_maps)

    def _band_weights(self, keys, raw, w2, d2, d3, d4, J: int, gain: torch.Tensor, keep_maps: bool) -> dict:
        """The tail of eqs. (8)-(11) shared by both targets: the band energies of the 3rd- and 4th-derivative maps
        (eqs. 8-9), beta (eq. 10), and the band mix of the per-subband weights ``raw`` (a list of ``(B, Kc)``, one
        per subband of ``keys``). ``d2``: a function giving the 2nd-derivative map, called only for ``keep_maps``."""
        W3, sub3 = band_energy_weights(d3, J, gain)
        W4, sub4 = band_energy_weights(d4, J, gain)
        beta = (W3 + W4) / 2
        out = {"keys": keys, "raw": self._band_mix(torch.stack(raw, dim=-1), keys, beta, J)}
        if keep_maps:
            d2 = d2()
            sub2 = band_energy_weights(d2, J, gain)[1]
            out.update(w2=w2, d2=d2, d3=d3, d4=d4, sub2=sub2, sub3=sub3, sub4=sub4, W3=W3, W4=W4, beta=beta)
        return out

    def _band_mix(self, raw: torch.Tensor, keys, beta: torch.Tensor, J: int) -> torch.Tensor:
        """Eqs. (9)-(11)'s band weighting of the raw per-subband weights ``(B, Kc, bands)`` (``self.bands``)."""
        if self.bands == "equal":
            return raw.sum(dim=-1, keepdim=True).expand_as(raw)
        if J > 0:
            band_beta = torch.stack([beta[..., j - 1, _BAND_INDEX[b]] for j, b in keys], dim=-1)
            if self.bands == "modulate":  # channel total x 4 beta (beta uniform -> "equal")
                return raw.sum(dim=-1, keepdim=True) * 4 * band_beta
            return raw * band_beta
        return raw

    def _subband_weights(self, g: torch.Tensor, J: int, gain: torch.Tensor, keep_maps: bool) -> dict:
        """Eqs. (4)-(11) for a chunk of channels of one layer; ``g`` ``(B, Kc, h, w)`` (scaled gradient).

        Returns ``keys`` (the subbands ``(j, band)``) and ``raw`` ``(B, Kc, bands)`` weights, plus the
        intermediate maps when ``keep_maps``."""
        d3, d4 = derivative_map(g, 3), derivative_map(g, 4)
        if self.hessian == "none":  # ablation: no curvature term
            w2 = g.new_ones(g.shape[:2])
        else:
            w2 = hessian_weight(g, self.sigmas, self.hessian)  # (B, Kc)
        keys, raw = [], []
        for j, band, coeff in haar_wavedec2(g, J).bands():
            keys.append((j, band))
            positive = (coeff.clamp_min(0) * coeff * coeff).sum(dim=(-2, -1))  # sum_p ReLU(G_p) G_p^2
            raw.append(w2 * positive)
        return self._band_weights(keys, raw, w2, lambda: derivative_map(g, 2), d3, d4, J, gain, keep_maps)

    def _scale_components(self, m: torch.Tensor, keys, a: torch.Tensor, J: int) -> torch.Tensor:
        """The per-scale maps ``C_j`` ``(B, max(J, 1), h, w)`` with ``M = sum_j alpha_j C_j``; ``m`` ``(B, K, bands)``
        are eq. (12)'s normalised weights of the subbands ``keys`` (``LL_J`` counts as level J).

        ``apply_to="channels"``: ``C_j = sum_k (sum_{b at level j} m_kb) A_k``. ``"subbands"``: ``C_j = IDWT(subbands
        of level j of sum_k m_kb DWT(A_k)_b)``, where ``sum_k m_kb DWT(A_k)_b = DWT(sum_k m_kb A_k)_b`` (the DWT is
        linear): one weighted channel sum per subband (a single batched product over A), then the DWT of those
        few maps."""
        if self.apply_to == "channels":
            level = torch.tensor([max(j, 1) - 1 for j, _ in keys], device=m.device)
            per_level = torch.nn.functional.one_hot(level, max(J, 1)).to(m.dtype)  # (bands, levels)
            return torch.einsum("bkn,nl,bkhw->blhw", m, per_level, a)
        mixed = torch.einsum("bkn,bkhw->bnhw", m, a)  # (B, bands, h, w)
        pyramid = haar_wavedec2(mixed, J)
        index = {key: i for i, key in enumerate(keys)}
        out = []
        for level in range(1, max(J, 1) + 1):
            fused = pyramid.map_bands(lambda j, b, coeff: coeff[:, index[(j, b)]] if max(j, 1) == level
                                      else coeff.new_zeros(coeff[:, 0].shape))
            out.append(haar_waverec2(fused))
        return torch.stack(out, dim=1)

    def compute(self, activations, gradients, scores, input_size, keep_maps) -> HDMResult:
        device = activations[0].device
        dtype = torch.float64 if activations[0].dtype == torch.float64 else torch.float32
        gain = torch.tensor(self.band_gain, dtype=dtype, device=device)
        result = HDMResult(cam=None, layer_maps={}, categories=[], scores=None, logits=None)

        # Every weight below is homogeneous in g and normalised per image (eqs. 10, 12), so g is
        # divided by one positive constant per image (its largest magnitude over all layers): that
        # changes no map and keeps |g|^4 far from float32 underflow. Exposed maps are scaled back.
        softmax = isinstance(gradients, _ClassJacobians)
        scale = torch.stack([g.abs().flatten(1).amax(dim=1) for g in gradients]).amax(dim=0).to(dtype)
        scale = scale.clamp_min(torch.finfo(dtype).tiny)
        scale64 = scale.double().cpu().numpy().reshape(-1, 1, 1, 1)

        # Eqs. (4)-(11) per layer: raw weights of every (channel, subband). Every step is per channel,
        # so channels may go in chunks: the temporaries stay small (cache-resident, reused by the allocator).
        per_layer = []
        for name, a, g in zip(self.layer_names, activations, gradients):
            a = a.to(dtype)
            J = min(self.levels, max_level(*a.shape[-2:]))
            # Chunking is for speed only; with keep_maps the layer goes whole so its maps need no joining.
            cdim = 2 if softmax else 1  # the channel axis: (B, K, h, w), or (B, C, K, h, w) for the softmax target
            step = g.shape[cdim] if keep_maps else max(1, _CHUNK_ELEMENTS // max(1, g.narrow(cdim, 0, 1).numel()))
            unit = scale.view((-1,) + (1,) * (g.dim() - 1))
            if softmax:
                parts = [self._softmax_subband_weights(c.to(dtype) / unit, gradients.probs, gradients.classes, J, gain,
                                                       keep_maps) for c in g.split(step, dim=2)]
            else:
                parts = [self._subband_weights(c.to(dtype) / unit, J, gain, keep_maps) for c in g.split(step, dim=1)]
            keys, raw = parts[0]["keys"], torch.cat([p["raw"] for p in parts], dim=1)  # (B, K, bands)
            per_layer.append((name, a, J, keys, raw))
            if keep_maps:
                kept = parts[0]
                result.levels[name] = J
                result.hessian_weights[name] = _np(kept["w2"], scale64[:, :, 0, 0] ** 2)
                result.derivative_maps[name] = {n: _np(kept[f"d{n}"], scale64**n) for n in (2, 3, 4)}
                result.derivative_subbands[name] = {
                    n: [tuple(_np(b, scale64**n) for b in level) for level in kept[f"sub{n}"]] for n in (2, 3, 4)}
                result.band_weights[name] = {key: _np(kept[key]) for key in ("W3", "W4", "beta")}
                result.activations[name] = _np(a)

        # Eq. (12): one normalisation per image across layers, channels, scales and bands.
        total = sum(raw.abs().sum(dim=(1, 2)) for *_, raw in per_layer)
        total = total.clamp_min(torch.finfo(dtype).tiny).view(-1, 1, 1)

        # Eqs. (13)-(14): weight each channel (or each subband of each channel), sum the layers. Both readings
        # are linear in the weights, so the map is kept per scale j (``C_j``, from the subbands of level j,
        # LL_J counting as level J) and the layer map is M = sum_j alpha_j C_j: the same map, and the
        # C_j let alpha be fitted without recomputing anything (hdm.cam.theta).
        maps = []
        for name, a, J, keys, raw in per_layer:
            C = self._scale_components(raw / total, keys, a, J)  # (B, max(J, 1), h, w)
            alpha = scale_weights(J, self.alpha, self.theta, dtype=dtype, device=device)
            M = _mix_scales(C, alpha)
            maps.append(M)
            result.layer_maps[name] = _np(M.clamp_min(0))
            result.scale_maps[name] = _np(C)
            if keep_maps:
                result.alpha[name] = _np(alpha)
                result.subband_weights[name] = {key: _np(raw[..., i] / total[:, :, 0] * alpha[max(key[0], 1) - 1])
                                                for i, key in enumerate(keys)}
        cam = _fuse_layer_maps(maps, input_size, self.layer_fusion)
        result.cam = _np(cam)
        return result
