"""Backbone registry, checkpoint loading (DLPan-Toolbox and pantailor formats) and checksums.

Three kinds of ``weights`` are accepted by :func:`load`:

* ``None``: the project's own weights shipped in ``pipeline/weights/<name>_<B>band.pt``;
* ``"dlpan:<SENSOR>"`` (e.g. ``"dlpan:wv3"``): the published DLPan-Toolbox checkpoint of that
  network, from the weights registry (data folder, cache, mirror or download; sha256-checked);
* a path to a ``.pt``/``.pth`` file: a plain state dict (DLPan or pantailor key names) or a
  pantailor checkpoint (a dict with ``"format": "pantailor-backbone"`` and ``"state_dict"``).

Files are read with ``torch.load(weights_only=True)``; nothing is re-saved.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..config import data_dir
from ..errors import CheckpointError, ConfigError
from ..sensors import SensorSpec, get_sensor
from .base import Backbone
from .dicnn import DiCNN
from .fusionnet import FusionNet
from .pannet import PanNet
from .pnn import PNN

log = logging.getLogger(__name__)

FORMAT = "pantailor-backbone"
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"

_REGISTRY: dict[str, Callable[[int], Backbone]] = {
    "fusionnet": FusionNet,
    "pannet": PanNet,
    "dicnn": DiCNN,
    "pnn": PNN,
}
#: File names tried, in order, for each network in a DLPan sensor folder.
DLPAN_FILES: dict[str, tuple[str, ...]] = {
    "fusionnet": ("fusionnet.pth",),
    "pannet": ("pannet.pth", "panet.pth"),
    "dicnn": ("dicnn1.pth", "dicnn.pth"),
    "pnn": ("pnn.pth",),
}


def backbone_names() -> list[str]:
    """Names accepted by :func:`build` and :func:`load`."""
    return sorted(_REGISTRY)


def build(name: str, n_bands: int) -> Backbone:
    """A randomly initialised backbone ``name`` for ``n_bands`` MS bands."""
    key = name.strip().lower()
    if key not in _REGISTRY:
        raise ConfigError(
            "Unknown backbone.",
            expected="one of " + ", ".join(backbone_names()),
            got=repr(name),
            fix="choose a listed backbone (or a classical method where the command allows it).",
        )
    return _REGISTRY[key](n_bands)


def dlpan_checkpoint(name: str, sensor: str) -> Path:
    """A verified local copy of the DLPan-Toolbox checkpoint of ``name`` trained on ``sensor``.

    Registered checkpoints (:mod:`pipeline.weights.registry`) come from ``PANTAILOR_DATA``, the
    cache, the mirror or a download, checked against their sha256; others are looked up by file
    name under ``PANTAILOR_DATA/weights/dlpan/<SENSOR>/`` as before.
    """
    from ..weights import registry

    key = f"dlpan-{name}-{sensor.lower()}"
    if key in registry.ENTRIES:
        return registry.resolve(registry.ENTRIES[key])
    folder = data_dir() / "weights" / "dlpan" / sensor.upper()
    for fname in DLPAN_FILES.get(name, (f"{name}.pth",)):
        if (folder / fname).is_file():
            return folder / fname
    raise CheckpointError(
        f"No DLPan checkpoint of {name} for {sensor}.",
        path=folder,
        expected=" or ".join(DLPAN_FILES.get(name, (f"{name}.pth",))),
        got="no such file",
        fix="run `pantailor weights list` for the registered ones, or pass a checkpoint path.",
    )


def default_weights(name: str, n_bands: int) -> Path:
    """The project's own shipped weights for ``name`` with ``n_bands`` bands."""
    path = WEIGHTS_DIR / f"{name}_{n_bands}band.pt"
    if not path.is_file():
        shipped = sorted(p.name for p in WEIGHTS_DIR.glob("*.pt")) if WEIGHTS_DIR.is_dir() else []
        raise CheckpointError(
            f"No shipped weights for {name} with {n_bands} bands.",
            path=path,
            expected="one of " + (", ".join(shipped) or "(none shipped yet)"),
            got=f"{name}, {n_bands} bands",
            fix="pass --weights PATH (or dlpan:<SENSOR>), or train some with "
            "`pantailor train-backbone`.",
        )
    from ..weights import registry

    entry = next((e for e in registry.ENTRIES.values() if not e.url and e.file == path.name), None)
    return registry.verify(entry, path, source="package") if entry is not None else path


def _read(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise CheckpointError(
            "Cannot read the checkpoint.",
            path=path,
            expected="a torch state dict (.pt/.pth) loadable with weights_only=True",
            got=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            fix="check the file path and that it is a PyTorch checkpoint.",
        ) from exc
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        obj = obj["state_dict"]
    elif isinstance(obj, Mapping) and "model_state" in obj:
        obj = obj["model_state"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            "The checkpoint is not a state dict of tensors.",
            path=path,
            expected="a mapping of parameter names to tensors",
            got=type(obj).__name__,
            fix="pass a state dict saved with torch.save(model.state_dict(), path).",
        )
    return {str(k): v for k, v in obj.items()}


def load_state(model: Backbone, state: Mapping[str, torch.Tensor], path: Path | str) -> None:
    """Load ``state`` (pantailor or DLPan key names) strictly, or raise listing every mismatch."""
    own = model.state_dict()
    if not set(state) <= set(own):
        state = model.dlpan_state(state)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    if missing or unexpected or wrong:
        lines = [f"missing: {', '.join(missing)}"] if missing else []
        lines += [f"unexpected: {', '.join(unexpected)}"] if unexpected else []
        lines += [f"shape mismatch: {'; '.join(wrong)}"] if wrong else []
        raise CheckpointError(
            f"The checkpoint does not fit {model.name} with {model.n_bands} bands.",
            path=path,
            expected=f"the {len(own)} tensors of {model.name}({model.n_bands} bands)",
            got=" | ".join(lines),
            fix="use a checkpoint of this network trained for this band count.",
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def load(
    name: str,
    weights: str | Path | None = None,
    n_bands: int | None = None,
    sensor: str | SensorSpec | None = None,
) -> Backbone:
    """Build backbone ``name`` and load its weights; returned in eval mode with frozen parameters.

    Parameters
    ----------
    name
        Backbone name (see :func:`backbone_names`).
    weights
        ``None`` (the shipped project weights), ``"dlpan:<SENSOR>"``, or a checkpoint path.
    n_bands
        Number of MS bands; defaults to the sensor's.
    sensor
        The scene's sensor; used for the band count and to check the ratio the network needs.

    Raises
    ------
    CheckpointError
        If the weights are missing or do not fit (lists mismatched keys and shapes).
    """
    spec = get_sensor(sensor) if sensor is not None else None
    if n_bands is None:
        if spec is None:
            raise ConfigError("load() needs n_bands or a sensor.", fix="pass sensor='wv3'.")
        n_bands = spec.n_bands
    elif spec is not None and spec.n_bands != n_bands:
        raise ConfigError(
            "The band count does not match the sensor.",
            expected=f"{spec.n_bands} bands for {spec.name}",
            got=n_bands,
        )
    model = build(name, n_bands)
    if spec is not None and model.ratio is not None and model.ratio != spec.ratio:
        raise ConfigError(
            f"{model.name} is built for ratio {model.ratio}.",
            expected=f"ratio {model.ratio}",
            got=f"{spec.name} with ratio {spec.ratio}",
            fix="choose a backbone without a fixed ratio (e.g. fusionnet).",
        )
    if weights is None:
        path = default_weights(model.name, n_bands)
        if n_bands == 8:
            log.warning(
                "using the shipped 8-band weights, trained on synthetic 8-band data (see "
                "pipeline/weights/MODEL_CARD.md): on real WorldView-3 they are worse than plain "
                "interpolation in SAM/ERGAS; pass --weights (e.g. dlpan:wv3) where you can"
            )
    elif isinstance(weights, str) and weights.lower().startswith("dlpan:"):
        path = dlpan_checkpoint(model.name, weights.split(":", 1)[1])
    else:
        path = Path(weights)
    load_state(model, _read(path), path)
    model.eval()
    model.requires_grad_(False)
    log.info("loaded %s (%d bands) from %s", model.name, n_bands, path)
    return model


def checksum(model: torch.nn.Module) -> str:
    """SHA-256 (hex) of the network name and its state dict (keys, dtypes, shapes, values)."""
    h = hashlib.sha256()
    h.update(str(getattr(model, "name", type(model).__name__)).encode())
    for key, value in sorted(model.state_dict().items()):
        t = value.detach().to("cpu").contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save_backbone(model: Backbone, path: str | Path, meta: Mapping[str, str | int | float]) -> None:
    """Save ``model`` in the pantailor checkpoint format (float32 state dict plus metadata)."""
    state = {k: v.detach().to("cpu", torch.float32).clone() for k, v in model.state_dict().items()}
    obj = {
        "format": FORMAT,
        "name": model.name,
        "n_bands": model.n_bands,
        "meta": dict(meta),
        "state_dict": state,
    }
    torch.save(obj, Path(path))


__all__ = [
    "DLPAN_FILES",
    "FORMAT",
    "WEIGHTS_DIR",
    "backbone_names",
    "build",
    "checksum",
    "default_weights",
    "dlpan_checkpoint",
    "load",
    "load_state",
    "save_backbone",
]
