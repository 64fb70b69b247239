"""Pretrained pansharpening backbones split at the feature interface, and the LMS upsampler.

See ``docs/DEVELOPING.md`` for the contract: :class:`Backbone` (``extract``/``map``/``forward``,
``receptive_field``, ``upsampler``), :func:`upsample`, :data:`UPSAMPLER_SUPPORT_MS`,
:func:`build`, :func:`load`, :func:`checksum`.
"""

from __future__ import annotations

from .base import Backbone
from .checkpoints import (
    backbone_names,
    build,
    checksum,
    default_weights,
    dlpan_checkpoint,
    load,
    save_backbone,
    weights_record,
)
from .dicnn import DiCNN
from .fusionnet import FusionNet
from .groups import BandGroups, band_groups
from .pannet import PanNet
from .pnn import PNN
from .upsample import UPSAMPLER_SUPPORT_MS, support_ms, upsample

__all__ = [
    "PNN",
    "UPSAMPLER_SUPPORT_MS",
    "Backbone",
    "BandGroups",
    "DiCNN",
    "FusionNet",
    "PanNet",
    "backbone_names",
    "band_groups",
    "build",
    "checksum",
    "default_weights",
    "dlpan_checkpoint",
    "load",
    "save_backbone",
    "support_ms",
    "upsample",
    "weights_record",
]
