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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..config import data_dir
from ..errors import CheckpointError, ConfigError
from ..files import file_sha256
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


def _shipped_groups(name: str, spec: SensorSpec) -> Backbone | None:
    """The shipped weights on band groups (:mod:`.groups`) where the sensor needs them, else None.

    ``None`` (load the shipped file of the sensor's band count as usual) when a file of that
    count is shipped and its band names are the sensor's or not all among them; a
    :class:`~.groups.BandGroups` when the count is not shipped (the largest fitting set) or the
    names are the sensor's in another order (FuseBox Landsat-7: R, G, B, ...).
    """
    from .groups import SHIPPED_BANDS, BandGroups, band_groups, pick_shipped

    stem = f"{name}_"
    have = sorted(
        int(p.name[len(stem) : -len("band.pt")])
        for p in WEIGHTS_DIR.glob(f"{stem}*band.pt")
        if p.name[len(stem) : -len("band.pt")].isdigit()
    )
    k = pick_shipped(spec.bands, have)
    names = SHIPPED_BANDS.get(k or 0, ())
    if k is None:
        return None  # default_weights raises, naming the shipped files
    if k == spec.n_bands and (tuple(names) == spec.bands or set(names) != set(spec.bands)):
        return None
    net = build(name, k)
    path = default_weights(net.name, k)
    load_state(net, _read(path), path)
    net.eval().requires_grad_(False)
    model = BandGroups(net, band_groups(spec.bands, names or ("",) * k), spec.n_bands)
    model.eval().requires_grad_(False)
    model.weights_file = str(path)
    log.info("%s for %s: shipped %s, %s", name, spec.name, path.name, model.describe())
    return model


def _grouped_checkpoint(model: Backbone, path: Path) -> Backbone:
    """``model``, or the :class:`~.groups.BandGroups` a saved band-group checkpoint holds."""
    from .groups import BandGroups

    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # any unreadable file: _read reports it
        return model
    if not (isinstance(obj, Mapping) and obj.get("format") == FORMAT and obj.get("groups")):
        return model
    net = build(model.name, int(obj["net_bands"]))
    return BandGroups(net, [tuple(g) for g in obj["groups"]], model.n_bands)


def _read(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # garbage bytes raise KeyError, IndexError, ...
        raise CheckpointError(
            "Cannot read the checkpoint.",
            path=path,
            expected="a torch state dict (.pt/.pth) loadable with weights_only=True",
            got=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
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
    model = build(name, _band_count(spec, n_bands))
    _check_ratio(model, spec)
    if weights is None and spec is not None:
        grouped = _shipped_groups(model.name, spec)
        if grouped is not None:
            return grouped
    model, path = _weights_file(model, weights)
    load_state(model, _read(path), path)
    model.eval()
    model.requires_grad_(False)
    model.weights_file = str(path)
    log.info("loaded %s (%d bands) from %s", model.name, model.n_bands, path)
    return model


def _band_count(spec: SensorSpec | None, n_bands: int | None) -> int:
    """``n_bands``, else the sensor's; refuses a count the sensor contradicts."""
    if n_bands is None:
        if spec is None:
            raise ConfigError("load() needs n_bands or a sensor.", fix="pass sensor='wv3'.")
        return spec.n_bands
    if spec is not None and spec.n_bands != n_bands:
        raise ConfigError(
            "The band count does not match the sensor.",
            expected=f"{spec.n_bands} bands for {spec.name}",
            got=n_bands,
        )
    return n_bands


def _check_ratio(model: Backbone, spec: SensorSpec | None) -> None:
    """Refuse a network built for a fixed ratio (PNN) on a sensor of another ratio."""
    if spec is not None and model.ratio is not None and model.ratio != spec.ratio:
        raise ConfigError(
            f"{model.name} is built for ratio {model.ratio}.",
            expected=f"ratio {model.ratio}",
            got=f"{spec.name} with ratio {spec.ratio}",
            fix="choose a backbone without a fixed ratio (e.g. fusionnet).",
        )


def _weights_file(model: Backbone, weights: str | Path | None) -> tuple[Backbone, Path]:
    """The checkpoint ``weights`` names for ``model`` (shipped, ``dlpan:SENSOR`` or a path), and
    the model to load it into (a saved band-group checkpoint brings its own groups)."""
    if weights is None:
        path = default_weights(model.name, model.n_bands)
        if model.n_bands == 8:
            log.warning(
                "using the shipped 8-band weights, trained on synthetic 8-band data (see "
                "pipeline/weights/MODEL_CARD.md): on real WorldView-3 they are worse than plain "
                "interpolation in SAM/ERGAS; pass --weights (e.g. dlpan:wv3) where you can"
            )
        return model, path
    if isinstance(weights, str) and weights.lower().startswith("dlpan:"):
        return model, dlpan_checkpoint(model.name, weights.split(":", 1)[1])
    path = Path(weights)
    return _grouped_checkpoint(model, path), path


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


def weights_record(model: Backbone) -> dict[str, Any]:
    """What a report says about the weights :func:`load` returned: file, its sha256, bands.

    ``file`` is the checkpoint read (``None`` for an unloaded network), ``file_sha256`` the
    digest of its bytes, ``state_sha256`` :func:`checksum` of the loaded network, ``n_bands`` the
    band count run, and ``band_groups`` the groups (:mod:`.groups`) where the weights have
    another band count or order than the sensor.
    """
    from .groups import BandGroups

    file = getattr(model, "weights_file", None)
    digest = file_sha256(file) if file is not None and Path(file).is_file() else None
    groups = [list(g) for g in model.groups] if isinstance(model, BandGroups) else None
    return {
        "backbone": model.name,
        "file": file,
        "file_sha256": digest,
        "state_sha256": checksum(model),
        "n_bands": model.n_bands,
        "band_groups": groups,
    }


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
    from .groups import BandGroups

    if isinstance(model, BandGroups):  # load() rebuilds it from these
        obj["groups"] = [list(g) for g in model.groups]
        obj["net_bands"] = model.net.n_bands
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
    "weights_record",
]
