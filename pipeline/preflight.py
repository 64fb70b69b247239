"""What a run checks on the client before anything is computed or written.

- :func:`check_paths`: no output of the run is one of its inputs (equal resolved paths, the same
  inode through a hard link, or a path inside an input store); the folders it writes into are
  writable (probed by creating a file, so read-only mounts and immutable folders count).
- :func:`open_inputs`: the inputs open and validate (a lazy :class:`pipeline.scene.Scene`, or the
  input :class:`pipeline.store.SceneStore`).
- :func:`identify`: the weights load (before ingest, also in a dry run); their checksum joins the
  run's fingerprint.
- :func:`open_journal`: the work dir's journal, resumed, discarded or refused (see
  :mod:`pipeline.runner`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .config import RunConfig
from .errors import ConfigError, StoreError
from .files import check_output_file, clashes, temporary_for
from .jobs import ModelSpec
from .journal import Journal, RunPaths, changed_inputs, input_identity, remove_created
from .methods import method
from .scene import Scene
from .sensors import SensorSpec
from .stages import check_sampling
from .store import SceneStore

log = logging.getLogger(__name__)


def check_paths(cfg: RunConfig, paths: RunPaths) -> None:
    """Refuse an output that is an input, and output folders that cannot be written."""
    for role, out in paths.outputs().items():
        for given in paths.inputs:
            if clashes(out, given):
                raise ConfigError(
                    f"An output of the run ({role}) is one of its inputs.",
                    path=[str(out), str(given)],
                    expected="outputs apart from the inputs",
                    got=f"{out} would overwrite or remove {given}",
                    fix="choose another -o (and --work-dir) than the input files.",
                )
    check_output_file(paths.cog, ())  # a folder: the export would fail after all the work
    if not cfg.dry_run:
        for folder in {paths.cog.parent, paths.work_dir}:
            _check_writable(folder)


def _check_writable(folder: Path) -> None:
    probe_dir = folder
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    probe = temporary_for(probe_dir / "write-probe")
    try:
        probe.write_bytes(b"")
    except OSError as exc:
        raise StoreError(
            "The output folder is not writable.",
            path=folder,
            expected="a folder this user can create files in",
            got=f"{probe_dir}: {exc.strerror or exc}",
            fix="choose another -o / --work-dir, or make the folder writable.",
        ) from exc
    finally:
        probe.unlink(missing_ok=True)


def open_inputs(cfg: RunConfig, paths: RunPaths) -> Scene | SceneStore:
    """Validate the inputs on the client (before any cluster work): a Scene or a SceneStore."""
    from .sensors import get_sensor

    if cfg.sensor_file:
        from .sensors import load_sensor_file

        load_sensor_file(cfg.sensor_file)
    if not paths.own_store:
        store = SceneStore.open(paths.store)
        store.verify_chunks()
        if cfg.sensor and get_sensor(cfg.sensor).name != store.meta.sensor:
            raise ConfigError(
                "The sensor does not match the store's.",
                path=paths.store,
                expected=store.meta.sensor,
                got=cfg.sensor,
                fix="drop --sensor or pass the store's sensor.",
            )
        _check_store_ingest(cfg, store)
        return store
    from .scene import open_scene

    if not cfg.sensor:
        raise ConfigError("--sensor is required for file inputs.", fix="pass e.g. --sensor wv3.")
    return open_scene(list(cfg.inputs), cfg.sensor, rows=cfg.ingest_tile, **dict(cfg.ingest))


def _check_store_ingest(cfg: RunConfig, store: SceneStore) -> None:
    """A ``--tile`` / ``--nodata`` / ``--dn-max`` the store was not ingested with, or an
    ingest-only option (``--ms-decimate``, ``--patch``, ``--tolerance``), is refused, not
    ignored."""
    for key, flag in (("nodata", "--nodata"), ("dn_max", "--dn-max")):
        given, stored = cfg.ingest.get(key), getattr(store.meta, key)
        if given is not None and (stored is None or float(given) != float(stored)):
            raise ConfigError(
                f"{flag} differs from the scene store's: a store input keeps its ingest settings.",
                path=store.path,
                expected=f"{flag} {stored} (the store's) or none"
                if stored is not None
                else f"no {flag} (the store has none)",
                got=f"{flag} {given}",
                fix=_store_fix(flag),
            )
    if cfg.tile is not None and cfg.tile != store.meta.tile:
        raise ConfigError(
            "--tile differs from the scene store's: a store input keeps its tiles.",
            path=store.path,
            expected=f"--tile {store.meta.tile} (the store's) or none",
            got=f"--tile {cfg.tile}",
            fix=_store_fix("--tile"),
        )
    for key in ("ms_decimate", "patch", "tolerance"):  # they act at ingest only
        if cfg.ingest.get(key) is not None:
            flag = "--" + key.replace("_", "-")
            raise ConfigError(
                f"{flag} acts at ingest: a store input keeps its ingest settings.",
                path=store.path,
                expected=f"no {flag} with a scene store input",
                got=f"{flag} {cfg.ingest[key]}",
                fix=_store_fix(flag),
            )


def _store_fix(flag: str) -> str:
    return (
        f"drop {flag}, or ingest the scene again with it (pantailor ingest ... --overwrite) "
        "or run on the files."
    )


def model_spec(cfg: RunConfig, sensor: SensorSpec, n_bands: int) -> ModelSpec:
    """The pretrained backbone's :class:`ModelSpec` for this run (weights path resolved; the
    sensor travels as its spec, so custom sensors need no lookup by name on workers)."""
    weights = cfg.weights
    if weights and not weights.lower().startswith("dlpan:"):
        weights = str(Path(weights).resolve())
    return ModelSpec(backbone=cfg.method, weights=weights, sensor=sensor, n_bands=n_bands)


def identify(cfg: RunConfig, scene: Scene | SceneStore) -> tuple[ModelSpec | None, dict[str, Any]]:
    """Load the weights (networks) and return the base model spec and the run's fingerprint."""
    fingerprint = cfg.fingerprint()
    if cfg.sensor_file and not isinstance(scene, SceneStore):
        # the file's sensor as read now: an edited --sensor-file is another run, not this one
        fingerprint["sensor_spec"] = scene.sensor.to_attrs()
    if not method(cfg.method).network:
        return None, fingerprint
    from .backbones import checksum, load

    if isinstance(scene, SceneStore):
        sensor, n_bands, shape, ratio = (
            scene.sensor,
            scene.meta.n_bands,
            scene.meta.pan_shape_yx,
            scene.meta.ratio,
        )
    else:
        sensor, n_bands, shape, ratio = (
            scene.sensor,
            scene.n_bands,
            scene.pan_shape_yx,
            scene.ratio,
        )
    spec = model_spec(cfg, sensor, n_bands)
    backbone = load(spec.backbone, spec.weights, n_bands=spec.n_bands, sensor=spec.sensor)
    fingerprint["weights_sha256"] = checksum(backbone)
    if cfg.effective_adapt != "none":
        check_sampling(cfg, shape, ratio)
    return spec, fingerprint


def _store_meta(scene: Scene | SceneStore) -> dict[str, Any] | None:
    return scene.meta.to_attrs() if isinstance(scene, SceneStore) else None


def _upgrade(old: dict[str, Any], paths: RunPaths) -> dict[str, Any]:
    """A version-1 journal lacks ``output`` and ``created``: it wrote the usual files."""
    if "created" not in old:
        made = [paths.adapter, paths.coefficients, paths.cog, paths.report, paths.quicklook]
        old["created"] = [str(p) for p in made + ([paths.store] if paths.own_store else [])]
    old.setdefault("output", str(paths.cog))
    return old


def _check_foreign(cfg: RunConfig, paths: RunPaths, journal: Journal) -> None:
    """Refuse files in the way that no journal of this output created."""
    if paths.own_store and paths.store.exists() and not journal.created(paths.store):
        raise StoreError(
            "The work dir holds a scene store this run did not create.",
            path=paths.store,
            expected="no scene.zarr in the work dir, or one created by this output's run",
            got="an existing scene.zarr without a journal of this output",
            fix="pass that store as the input, or choose another --work-dir.",
        )
    if cfg.overwrite:
        return
    for product in (paths.cog, paths.report, paths.quicklook):
        if product.exists() and not journal.created(product):
            raise StoreError(
                "The output file already exists.",
                path=product,
                expected="a new path, or an unfinished run of the same settings",
                got="an existing file not written by this run",
                fix="pass --overwrite or choose another -o (pantailor batch replaces no file it "
                "did not write: move that file away, or choose another output folder).",
            )


def _check_products(paths: RunPaths, journal: Journal) -> None:
    """Refuse to call a run complete whose COG was replaced since it finished."""
    replaced = journal.replaced()
    if replaced:
        raise StoreError(
            "The output was replaced after its run finished: it is not this run's product.",
            path=paths.cog,
            expected="the COG this run wrote (size and mtime recorded in its journal)",
            got="; ".join(replaced),
            fix="move the file there now away and rerun: the COG is exported again from the "
            "finished run (pantailor batch: with --retry-failed); or pass --overwrite to "
            "recompute everything, replacing that file.",
        )


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k}: {json.dumps(old.get(k))} -> {json.dumps(new.get(k))}" for k in keys)


def open_journal(
    cfg: RunConfig,
    paths: RunPaths,
    fingerprint: dict[str, Any],
    scene: Scene | SceneStore,
    *,
    dry_run: bool = False,
) -> tuple[Journal, bool]:
    """The run's journal and whether the run is complete already (see :mod:`pipeline.runner`).

    In a dry run nothing is removed or written; the returned journal is what the run would use.
    """
    old = Journal.read(paths.journal)
    if old is not None:
        old = _upgrade(old, paths)
        if old["output"] != str(paths.cog):
            raise StoreError(
                "The work dir holds the journal of another output.",
                path=paths.journal,
                expected=f"a work dir of {paths.cog}",
                got=f"the run of {old['output']}",
                fix="choose another --work-dir.",
            )
    journal = Journal(paths.journal, fingerprint, paths.cog)
    journal.data["inputs"] = input_identity(paths, _store_meta(scene))
    reason = _start_over(cfg, old, journal)
    if old is not None and reason is None:
        journal.data = {**old, "inputs": _merge_inputs(old["inputs"], journal.data["inputs"])}
        if journal.complete:
            _check_products(paths, journal)
        else:
            _check_foreign(cfg, paths, journal)
        done = journal.complete and paths.cog.is_file()
        if not dry_run and not done:
            journal.flush(force=True)
        return journal, done
    if old is not None:
        log.warning("starting over: %s", reason)
        _restart(cfg, paths, old, journal, dry_run=dry_run)
    if not dry_run:
        _check_foreign(cfg, paths, journal)
        paths.work_dir.mkdir(parents=True, exist_ok=True)
        journal.flush(force=True)
    return journal, False


#: Settings the scene store depends on: when only others change, a restart keeps the store.
INGEST_KEYS = ("inputs", "sensor", "sensor_file", "sensor_spec", "tile", "ingest")


def _restart(
    cfg: RunConfig, paths: RunPaths, old: dict[str, Any], journal: Journal, *, dry_run: bool
) -> None:
    """Remove what the earlier run created, keeping its scene store where it is still valid."""
    reuse = (
        not cfg.overwrite
        and paths.own_store
        and "_changes" not in old
        and "ingest" in old.get("stages", {})
        and all(old["fingerprint"].get(k) == journal.fingerprint.get(k) for k in INGEST_KEYS)
    )
    if not dry_run:
        remove_created(old, paths.store, keep=[paths.store] if reuse else [])
    journal.data["inputs_changed"] = old.get("_changes", [])
    if reuse:
        log.info("keeping the scene store %s (same inputs and ingest settings)", paths.store)
        journal.data["created"] = [str(paths.store)]
        journal.data["stages"]["ingest"] = old["stages"]["ingest"]
        journal.data["inputs"] = _merge_inputs(old["inputs"], journal.data["inputs"])


def _start_over(cfg: RunConfig, old: dict[str, Any] | None, journal: Journal) -> str | None:
    """Why the earlier run ``old`` cannot be resumed (``None``: resume it)."""
    if old is None:
        return None
    if cfg.overwrite:
        return "--overwrite"
    if old["fingerprint"] != journal.fingerprint:
        diff = _differences(old["fingerprint"], journal.fingerprint)
        if old.get("complete"):
            raise StoreError(
                "The work dir holds a finished run with other settings.",
                path=journal.path,
                expected="the settings of that run",
                got=diff,
                fix="pass --overwrite to start over, or another --work-dir / -o.",
            )
        return f"the unfinished run in {journal.path.parent} had other settings ({diff})"
    changes = changed_inputs(old.get("inputs", []), journal.data["inputs"])
    if changes:
        old["_changes"] = changes
        return "the inputs changed since the last run: " + "; ".join(changes)
    return None


def _merge_inputs(old: list[dict[str, Any]], now: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The current identities, keeping the recorded checksums (a touched file keeps its sha)."""
    return [{**o, **n} for o, n in zip(old, now, strict=False)] if len(old) == len(now) else now


__all__ = ["check_paths", "identify", "model_spec", "open_inputs", "open_journal"]
