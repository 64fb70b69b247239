"""One table of methods and adaptation modes.

It feeds the CLI choices (``--method``, ``--adapt``), the checks of :class:`pipeline.runner.RunConfig`
and :class:`pipeline.jobs.ModelSpec`, the stage table (does a method fit? does an adapt mode?) and
the workers (which file a fitted adapter is and how it is loaded). A new network or classical
method is one row here (plus its code in :mod:`pipeline.backbones` / :mod:`pipeline.classical`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from .errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Method:
    """One pansharpening method.

    Attributes
    ----------
    name
        CLI and config name.
    kind
        ``network`` (a backbone from :mod:`pipeline.backbones`, adaptable) or ``classical`` (global
        coefficients fitted once per scene, :mod:`pipeline.classical`).
    summary
        One line for help texts.
    """

    name: str
    kind: str
    summary: str

    @property
    def network(self) -> bool:
        """Whether the method is a network (has weights, can be adapted)."""
        return self.kind == "network"


@dataclass(frozen=True, kw_only=True)
class AdaptMode:
    """One way of adapting a network to the scene.

    Attributes
    ----------
    name
        ``none``, ``tailor`` or ``finetune``.
    fits
        Whether a per-scene fit runs (and writes a file the tiles load).
    artefact
        What that file holds: ``tailor`` (a feature-tailor state for the frozen backbone) or
        ``backbone`` (a fine-tuned copy of the whole backbone).
    summary
        One line for help texts.
    """

    name: str
    fits: bool
    artefact: str | None
    summary: str


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(name="fusionnet", kind="network", summary="FusionNet (Deng et al. 2021)"),
        Method(name="pnn", kind="network", summary="PNN (Masi et al. 2016)"),
        Method(name="pannet", kind="network", summary="PanNet (Yang et al. 2017)"),
        Method(name="dicnn", kind="network", summary="DiCNN (He et al. 2019)"),
        Method(name="brovey", kind="classical", summary="Brovey transform"),
        Method(name="gsa", kind="classical", summary="Gram-Schmidt adaptive"),
        Method(name="mtf-glp", kind="classical", summary="MTF-matched GLP"),
        Method(name="mtf-glp-hpm", kind="classical", summary="MTF-GLP, high-pass modulation"),
    )
}

ADAPT_MODES: dict[str, AdaptMode] = {
    a.name: a
    for a in (
        AdaptMode(name="tailor", fits=True, artefact="tailor", summary="fit a feature tailor"),
        AdaptMode(name="none", fits=False, artefact=None, summary="the pretrained network"),
        AdaptMode(
            name="finetune", fits=True, artefact="backbone", summary="fine-tune the whole network"
        ),
    )
}

NETWORKS = tuple(n for n, m in METHODS.items() if m.network)
CLASSICAL = tuple(n for n, m in METHODS.items() if not m.network)
ADAPTS = tuple(ADAPT_MODES)


T = TypeVar("T")


def _lookup(table: Mapping[str, T], name: str, problem: str, flag: str) -> T:
    """``table[name]``, or a :class:`ConfigError` listing the known names and the flag."""
    if name not in table:
        raise ConfigError(
            problem, expected=", ".join(table), got=repr(name), fix=f"choose a listed {flag}."
        )
    return table[name]


def method(name: str) -> Method:
    """The method ``name``, or a :class:`ConfigError` listing the known ones."""
    return _lookup(METHODS, name, "Unknown method.", "method (--method)")


def adapt_mode(name: str) -> AdaptMode:
    """The adaptation mode ``name``, or a :class:`ConfigError` listing the known ones."""
    return _lookup(ADAPT_MODES, name, "Unknown adaptation.", "mode (--adapt)")


def fitted_mode(name: str) -> AdaptMode:
    """The mode ``name`` if it fits a file per scene, else a :class:`ConfigError`."""
    mode = adapt_mode(name)
    if not mode.fits:
        fitting = ", ".join(a.name for a in ADAPT_MODES.values() if a.fits)
        raise ConfigError("Nothing to fit for this adaptation.", expected=fitting, got=name)
    return mode


def effective_adapt(method_name: str, adapt: str) -> str:
    """``none`` for a classical method (nothing to adapt), else ``adapt`` (checked)."""
    mode = adapt_mode(adapt)
    return mode.name if method(method_name).network else "none"


__all__ = [
    "ADAPTS",
    "ADAPT_MODES",
    "CLASSICAL",
    "METHODS",
    "NETWORKS",
    "AdaptMode",
    "Method",
    "adapt_mode",
    "effective_adapt",
    "fitted_mode",
    "method",
]
