"""The weights catalogue, as data: every checkpoint ``pipeline.backbones.load`` knows by name.

Each DLPan-Toolbox entry names the file in the upstream repository
(``liangjiandeng/DLPan-Toolbox``) at a pinned commit. The repository path and commit were
confirmed from an index of the public repository (that the file exists at that commit); the
sha256 is that of the copy under ``PANTAILOR_DATA/weights/dlpan`` (which the project's tests and
benchmarks use). Whether the upstream bytes at that commit hash to the same digest could not be
confirmed from this (offline) machine: a download that differs is refused, naming the file, so a
mismatch cannot go unnoticed. Where the upstream file name differs from the data folder's, the
entry says so in ``note``.

Not listed: ``msdcnn`` and ``drpnn`` (no pantailor backbone loads them) and the APNN PNN+
``*.pth.tar`` files (a different PNN variant ``load`` does not build).
"""

from __future__ import annotations

UPSTREAM_REPO = "liangjiandeng/DLPan-Toolbox"
UPSTREAM_DIR = "01-DL-toolbox(Pytorch)/UDL/pretrained-model"
DLPAN_LICENCE = (
    "GPL-3.0 (repository root LICENSE); the PyTorch folder ships a GPL-2.0 text "
    "(PANTAILOR_DATA/weights/dlpan/LICENSE_*)"
)
#: Band count of each DLPan training sensor.
DLPAN_BANDS = {"qb": 4, "wv2": 8, "wv3": 8, "wv4": 4}

#: (network, sensor, upstream file, data-folder file, pinned commit, sha256, note)
# fmt: off
DLPAN: tuple[tuple[str, str, str, str, str, str, str], ...] = (
    ("dicnn", "qb", "dicnn1.pth", "dicnn1.pth", "5d5694d4275c64a0bed485451659ab06c1c684b5",
     "4daf0036f935bdb16c1e6f0d18fbc59e72fc9d507e5f29590c7184acfe9ef79b", ""),
    ("fusionnet", "qb", "fusionnet.pth", "fusionnet.pth", "daf79914f55fa72177134a8026c089d27060e62f",
     "8154ac2bcdbf7c443b2e2395c6b01c5823297986e7d788d84d637750299ec4b9", ""),
    ("pannet", "qb", "panet.pth", "panet.pth", "daf79914f55fa72177134a8026c089d27060e62f",
     "91629477ee57fb8265ad42b9dd0ddd96ada7dff9ddedf55706bd48854a1238bf", ""),
    ("pnn", "qb", "pnn.pth", "pnn.pth", "3af93d21ad62fddfa5147cb3a91bda923a4fa835",
     "81cc93ae27c9cd0dede8af032d41719016e90c132843cec3fe6ee4ab8e2817ed", ""),
    ("dicnn", "wv2", "dicnn1.pth", "dicnn1.pth", "3af93d21ad62fddfa5147cb3a91bda923a4fa835",
     "4111562672eee3eb6cd9b7e9aa33b2e63842141c83523cec316204a9505e7589", ""),
    ("fusionnet", "wv2", "fusionnet.pth", "fusionnet.pth", "3af93d21ad62fddfa5147cb3a91bda923a4fa835",
     "6e21010d83d00d69e06f7ad7559b06fcb65abf14849e4dac0ab5e230c0bac1b8", ""),
    ("pannet", "wv2", "pannet.pth", "pannet.pth", "daf79914f55fa72177134a8026c089d27060e62f",
     "7901902ae4a39109e9de1af8765dfba804594213d164c96c373b9420f3ece3af", ""),
    ("pnn", "wv2", "pnn.pth", "pnn.pth", "5d5694d4275c64a0bed485451659ab06c1c684b5",
     "19e311ac764221e47b048dca1da77260ada9d3eba47b9d9b44a9333f02e3d705", ""),
    ("dicnn", "wv3", "dicnn.pth", "dicnn1.pth", "daf79914f55fa72177134a8026c089d27060e62f",
     "36d1fc48bc68a177587a4583afcf1890d867636266845b9926085bb855be230c",
     "upstream name dicnn.pth, data-folder name dicnn1.pth: same file not confirmed"),
    ("fusionnet", "wv3", "fusionnet.pth", "fusionnet.pth", "daf79914f55fa72177134a8026c089d27060e62f",
     "203113636325d9ba49ea0a65457df96182c85587db3aeb436f53866c188438bc", ""),
    ("pannet", "wv3", "pannet.pth", "pannet.pth", "3af93d21ad62fddfa5147cb3a91bda923a4fa835",
     "31c46f726c3e54756283c06b52e83223e0b3c99b5a8807131082c95a407206af", ""),
    ("pnn", "wv3", "pnn.pth", "pnn.pth", "daf79914f55fa72177134a8026c089d27060e62f",
     "d37729c050de34fcc6d80c186f1bf7cb6c506d82d579304f89f66a8a1ffa12b2", ""),
    ("dicnn", "wv4", "dicnn1.pth", "dicnn1.pth", "5d5694d4275c64a0bed485451659ab06c1c684b5",
     "7b9b7908c296128a3781e88100050a16a05411435289bb7705eeba6c903e2943", ""),
    ("fusionnet", "wv4", "fusionnet.pth", "fusionnet.pth", "daf79914f55fa72177134a8026c089d27060e62f",
     "94e8fffb0220c43f01a22fe212fe4c9df246f6f5d08d84c68ba920857c8bf635", ""),
    ("pannet", "wv4", "pannet.pth", "pannet.pth", "daf79914f55fa72177134a8026c089d27060e62f",
     "2d9e8cd0ea0409b542b4a17835c940c19655289825014e84d6b48d2d8b1f7787", ""),
    ("pnn", "wv4", "pnn.pth", "pnn.pth", "5d5694d4275c64a0bed485451659ab06c1c684b5",
     "0650a487e5630ceb592d6a588b9b4a2f79075968ca83c4e8741d38dce810f529", ""),
)
# fmt: on

#: The project's own weights shipped in this package: (file, bands, sha256).
SHIPPED: tuple[tuple[str, int, str], ...] = (
    ("fusionnet_4band.pt", 4, "3f288e47835d7f6e6dca8242b2818cb30f6870e555c9afcc83917e88f439e0a8"),
    ("fusionnet_8band.pt", 8, "364e0ac6696b5e63272af92989dc9babf480893e4519f95781151fef73c0d62d"),
)

__all__ = ["DLPAN", "DLPAN_BANDS", "DLPAN_LICENCE", "SHIPPED", "UPSTREAM_DIR", "UPSTREAM_REPO"]
