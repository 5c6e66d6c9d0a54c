"""ResNet-style lens classifiers in plain torch (no torchvision): one logit, p_lens = sigmoid.

* ``resnet_small`` — CPU-friendly default for 64x64 grz: a 3x3 stride-2 stem then 4 stages of
  16-32-64-96 channels (one basic block each, each halving the resolution: 16, 8, 4, 2 px for a
  64 px stamp), BatchNorm, global average pool (~0.2 M parameters). Stride 2 in the first stage
  makes it ~3x cheaper than keeping 32x32 there, at a feature pitch of 4 px (1 arcsec).
* ``resnet18`` — the ResNet-18 layout (2 basic blocks per stage, 64-128-256-512 channels) with
  a 3x3 stride-1 stem and no max-pool (small stamps), for GPUs.

Optional metadata (standardised per-sample scalars, ``train.metadata_columns``) are
concatenated to the pooled features before the final linear layer. :meth:`LensResNet.embed`
returns the pooled image features themselves (the penultimate layer, without metadata): the
embeddings of the realism probe (DESIGN §7), written by ``gen5dask score`` as ``embedding``.
The architecture is fully described by a small dict (:func:`arch_spec`) stored in the model
file, so
:func:`build_model` ``(**spec)`` rebuilds it for scoring.
"""

from __future__ import annotations

import torch
from torch import nn

ARCHS = {
    "resnet_small": {"widths": (16, 32, 64, 96), "blocks": (1, 1, 1, 1), "stem_stride": 2,
                     "first_stride": 2},
    "resnet18": {"widths": (64, 128, 256, 512), "blocks": (2, 2, 2, 2), "stem_stride": 1,
                 "first_stride": 1},
}


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.short = None
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.short is None else self.short(x)))


class LensResNet(nn.Module):
    """ResNet-style binary classifier; ``forward(x, meta=None)`` returns logits ``(n,)``.

    Parameters
    ----------
    in_channels : int
        Bands (3 for grz).
    widths, blocks : tuple of int
        Channels and basic blocks per stage; stages after the first halve the resolution.
    stem_stride : int
        Stride of the 3x3 stem convolution.
    first_stride : int
        Stride of the first block of the first stage (later stages always use 2).
    n_meta : int
        Number of metadata inputs concatenated to the pooled features.
    crop : int
        Side, pixels, of the central crop the network sees (0: the whole input). The crop
        keeps the centre pixel ``(H//2, W//2)`` at ``(crop//2, crop//2)``; the input's
        normalisation (outer-region statistics) is computed on the whole stamp before it.
    """

    def __init__(self, *, in_channels: int = 3, widths=(16, 32, 64, 96), blocks=(1, 1, 1, 1),
                 stem_stride: int = 2, first_stride: int = 1, n_meta: int = 0, crop: int = 0):
        super().__init__()
        if len(widths) != len(blocks) or not widths:
            msg = f"widths {widths} and blocks {blocks} must be non-empty and the same length"
            raise ValueError(msg)
        if crop < 0:
            msg = f"crop must be >= 0 pixels, got {crop}"
            raise ValueError(msg)
        self.n_meta = int(n_meta)
        self.crop = int(crop)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        layers = []
        c = widths[0]
        for i, (w, nb) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(nb):
                stride = (2 if i > 0 else int(first_stride)) if j == 0 else 1
                layers.append(BasicBlock(c, w, stride))
                c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c + self.n_meta, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # zero-init last BN of each block: blocks start as identity
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    @property
    def embed_dim(self) -> int:
        """Width of :meth:`embed` (channels of the last stage)."""
        return int(self.head.in_features - self.n_meta)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features: global-average-pooled last-stage activations.

        Parameters
        ----------
        x : torch.Tensor
            ``(n, in_channels, H, W)`` network input (the shared normalisation of the stamps).

        Returns
        -------
        torch.Tensor
            ``(n, embed_dim)`` in the dtype of the computation (float32 outside autocast);
            the image part of the head's input (metadata are not included).
        """
        c = self.crop
        if c:
            hgt, wid = x.shape[-2:]
            if c > min(hgt, wid):
                msg = f"model crop {c} px is larger than its input {hgt}x{wid}"
                raise ValueError(msg)
            y0, x0 = hgt // 2 - c // 2, wid // 2 - c // 2
            x = x[..., y0:y0 + c, x0:x0 + c]
        h = self.features(self.stem(x))
        return torch.flatten(torch.nn.functional.adaptive_avg_pool2d(h, 1), 1)

    def forward(self, x: torch.Tensor, meta: torch.Tensor | None = None,
                *, return_embedding: bool = False):
        """Logits ``(n,)``; with ``return_embedding`` also :meth:`embed` ``(n, embed_dim)``."""
        h = self.embed(x)
        emb = h
        if self.n_meta:
            if meta is None or meta.shape[-1] != self.n_meta:
                got = None if meta is None else tuple(meta.shape)
                msg = f"model expects {self.n_meta} metadata inputs, got {got}"
                raise ValueError(msg)
            h = torch.cat([h, meta.to(h.dtype)], dim=1)
        logits = self.head(h).squeeze(1)
        return (logits, emb) if return_embedding else logits


def arch_spec(name: str, *, in_channels: int = 3, n_meta: int = 0, crop: int | None = None
              ) -> dict:
    """Primitive-only description of an architecture (stored in model files); ``crop``: side
    of the central input crop, pixels (``None``/0: whole stamp)."""
    if name not in ARCHS:
        msg = f"unknown model {name!r}; choose one of {sorted(ARCHS)}"
        raise ValueError(msg)
    a = ARCHS[name]
    return {"name": name, "in_channels": int(in_channels), "widths": list(a["widths"]),
            "blocks": list(a["blocks"]), "stem_stride": int(a["stem_stride"]),
            "first_stride": int(a["first_stride"]), "n_meta": int(n_meta),
            "crop": int(crop or 0)}


def build_model(spec: dict) -> LensResNet:
    """Build a :class:`LensResNet` from an :func:`arch_spec` dict."""
    return LensResNet(in_channels=spec["in_channels"], widths=tuple(spec["widths"]),
                      blocks=tuple(spec["blocks"]), stem_stride=spec["stem_stride"],
                      first_stride=spec.get("first_stride", 1), n_meta=spec["n_meta"],
                      crop=spec.get("crop", 0))


__all__ = ["ARCHS", "BasicBlock", "LensResNet", "arch_spec", "build_model"]
