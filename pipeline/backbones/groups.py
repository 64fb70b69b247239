"""Band groups: a backbone trained for ``k`` bands run on a sensor with other bands.

A sensor without weights of its own band count (Landsat-8's 7 bands, a user's 5-band sensor) or
whose bands are the weights' bands in another order (FuseBox Landsat-7: R, G, B, ...) runs the
network on **band groups** of ``k`` of its bands; every output band is the mean of the outputs of
the groups holding it. Where the weights' bands are the sensor's in another order, the one group
is that permutation; otherwise the groups are evenly spaced windows of ``k`` consecutive bands
(``by="name"`` instead puts each band the weights know in its own slot and lets each other band
replace the nearest one: measured slightly worse on Landsat-8, ``benchmarks/results/
band_groups.md``). :class:`BandGroups` keeps the backbone contract: the features are the groups'
features concatenated (``len(groups) * feat_channels`` channels), so the feature tailor adapts
all groups together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import ConfigError
from .base import Backbone

_L7 = ("blue", "green", "red", "nir", "swir1", "swir2")
#: Band names of the shipped ``<name>_<k>band.pt`` weights, by ``k`` (see MODEL_CARD.md).
SHIPPED_BANDS: dict[int, tuple[str, ...]] = {
    4: _L7[:4],
    6: _L7,
    8: ("coastal", "blue", "green", "yellow", "red", "red_edge", "nir1", "nir2"),
}


def pick_shipped(sensor_bands: Sequence[str], available: Sequence[int]) -> int | None:
    """The shipped band count to use for a sensor: its own, else the best for band groups.

    Its own count when shipped; else the largest ``k <= n`` whose band names are all the
    sensor's; else the largest ``k <= n``; ``None`` when every shipped set is larger.
    """
    n = len(sensor_bands)
    if n in available:
        return n
    fits = [k for k in available if k <= n]
    named = [k for k in fits if set(SHIPPED_BANDS.get(k, ("?",))) <= set(sensor_bands)]
    return max(named or fits) if fits else None


def band_groups(
    sensor_bands: Sequence[str], net_bands: Sequence[str], by: str = "auto"
) -> list[tuple[int, ...]]:
    """Groups of ``len(net_bands)`` indices into ``sensor_bands`` covering every sensor band.

    Parameters
    ----------
    sensor_bands
        The sensor's band names, in file order (``n`` of them).
    net_bands
        The weights' band names, in their order (``k <= n``; names may be empty strings when
        unknown).
    by
        ``"auto"``: the permutation where the names are the same set, else windows;
        ``"name"``: name slots where every weights band is the sensor's (else windows);
        ``"window"``: windows.

    Returns
    -------
    list of tuple of int
        Group ``g`` feeds sensor band ``g[j]`` to the network's input ``j``.
    """
    n, k = len(sensor_bands), len(net_bands)
    if not 1 <= k <= n:
        raise ConfigError(
            "Band groups need at most as many network bands as sensor bands.",
            expected=f"weights of 1..{n} bands",
            got=f"{k}-band weights for {n} sensor bands",
            fix="pass --weights with fewer bands (the shipped 4- or 6-band weights).",
        )
    names = list(sensor_bands)
    same = set(net_bands) == set(names) and len(set(net_bands)) == k == n
    if (by == "auto" and same) or (
        by == "name" and set(net_bands) <= set(names) and len(set(net_bands)) == k
    ):
        base = [names.index(b) for b in net_bands]
        groups = [tuple(base)]
        for i in range(n):
            if i not in base:
                slot = min(range(k), key=lambda j: (abs(base[j] - i), base[j]))
                groups.append(tuple(i if j == slot else base[j] for j in range(k)))
        return groups
    m = -(-n // k)  # ceil: the fewest windows that cover every band
    starts = sorted({round(float(s)) for s in np.linspace(0, n - k, m)})
    return [tuple(range(s, s + k)) for s in starts]


class BandGroups(Backbone):
    """``net`` (``k`` bands) applied to band groups of an ``n``-band image; outputs averaged.

    Parameters
    ----------
    net
        The trained backbone (eval mode, frozen).
    groups
        Index groups as :func:`band_groups` returns them (each of length ``net.n_bands``,
        together covering ``0..n_bands-1``).
    n_bands
        The sensor's band count ``n``.
    """

    def __init__(self, net: Backbone, groups: Sequence[Sequence[int]], n_bands: int) -> None:
        super().__init__(n_bands)
        idx = [tuple(int(i) for i in g) for g in groups]
        covered = {i for g in idx for i in g}
        if not idx or covered != set(range(n_bands)) or any(len(g) != net.n_bands for g in idx):
            raise ConfigError(
                "Band groups must each hold the network's band count and cover every band.",
                expected=f"groups of {net.n_bands} indices covering 0..{n_bands - 1}",
                got=idx,
            )
        self.net = net
        self.groups = idx
        self.name = net.name
        self.upsampler = net.upsampler
        self.ratio = net.ratio
        self.feat_channels = net.feat_channels * len(idx)
        count = torch.zeros(n_bands)
        for g in idx:
            count[list(g)] += 1
        self.register_buffer("count", count.view(1, -1, 1, 1), persistent=False)

    @property
    def receptive_field(self) -> int:
        """The network's (groups run side by side)."""
        return self.net.receptive_field

    def describe(self) -> str:
        """``"4 bands on groups (0,1,2,3) (2,3,4,5)"``, for logs and reports."""
        return f"{self.net.n_bands} bands on groups " + " ".join(
            "(" + ",".join(map(str, g)) + ")" for g in self.groups
        )

    def extract(self, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        """``(N, G * C_feat, H, W)``: each group's features, concatenated in group order."""
        return torch.cat(
            [self.net.extract(ms[:, list(g)], lms[:, list(g)], pan) for g in self.groups], dim=1
        )

    def map(
        self, feats: torch.Tensor, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor
    ) -> torch.Tensor:
        """Each group's output bands, summed into place and divided by how many groups hold each."""
        c = self.net.feat_channels
        out = torch.zeros_like(lms)
        for i, g in enumerate(self.groups):
            sel = list(g)
            part = self.net.map(feats[:, i * c : (i + 1) * c], ms[:, sel], lms[:, sel], pan)
            out = out.index_add(1, torch.tensor(sel, device=lms.device), part)
        count = self.get_buffer("count")
        return out / count.to(out.dtype)


__all__ = ["SHIPPED_BANDS", "BandGroups", "band_groups", "pick_shipped"]
