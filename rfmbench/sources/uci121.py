"""The UCI-121 source: the collection of Fernández-Delgado et al. (2014) in its own file layout,
with the splits that Arora et al. (2019) and the RFM paper use.

Each dataset is a folder ``NAME/`` of the collection's directory:

- ``NAME.txt``: ``key= value`` lines; ``fich1=`` names the data file, ``n_patrons1=`` its rows.
- the data file: whitespace-separated, a header line, first column a row number, last the class
  (0..K-1); the features are already numeric and standardized.
- ``conxuntos.dat``: two lines, the train and the validation row indices (hyperparameter
  selection; ``Task.selection``).
- ``conxuntos_kfold.dat``: four pairs of lines, train and test row indices (the outer folds).

Some datasets also have ``fich2=`` (the original test file, e.g. monks-1, optical). Its rows are
*not* part of the protocol: every index in both index files points into ``fich1``'s rows (the union
of each train/test pair is exactly ``n_patrons1`` rows), and Arora et al.'s scripts load ``fich1``
only. We do the same.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from rfmbench.errors import DataSourceError, unknown
from rfmbench.sources.base import DatasetRef, LoadContext
from rfmbench.sources.cache import cache_root, probe
from rfmbench.tasks import Split, Task

ARCHIVE_URL = "http://persoal.citius.usc.es/manuel.fernandez.delgado/papers/jmlr/data.tar.gz"
N_FOLDS = 4
DOWNLOAD_SECONDS = 60  # per socket operation, not for the whole download


def data_root(ctx: LoadContext) -> Path:
    """The collection's directory: ``--data-dir``, else ``CACHE/uci121``."""
    if ctx.data_dir is not None:
        return Path(ctx.data_dir).expanduser()
    return cache_root(ctx.cache_dir) / "uci121"


def fetch_hint(root: Path) -> str:
    return (
        f"point --data-dir at the unpacked collection, or run "
        f"`rfmbench datasets fetch --suite uci121 --data-dir {root}` where the network allows"
    )


def scan(root: Path) -> dict[str, Path]:
    """The dataset folders of the collection at ``root``, by name (sorted)."""
    if not root.is_dir():
        raise DataSourceError(f"UCI-121 directory {root} does not exist", hint=fetch_hint(root))
    found = {
        path.name: path
        for path in sorted(root.iterdir())
        if (path / f"{path.name}.txt").is_file() and (path / "conxuntos_kfold.dat").is_file()
    }
    if not found:
        raise DataSourceError(
            f"no UCI-121 datasets in {root} (expected folders NAME/ with NAME.txt and "
            "conxuntos_kfold.dat)",
            hint=fetch_hint(root),
        )
    return found


def list_refs(ctx: LoadContext) -> tuple[DatasetRef, ...]:
    """One reference per dataset folder found in the collection's directory."""
    return tuple(DatasetRef(name) for name in scan(data_root(ctx)))


def read_metadata(path: Path) -> dict[str, str]:
    """``NAME.txt``: ``key= value`` lines -> {key: value}."""
    meta = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            meta[key.strip()] = value.strip()
    return meta


def read_indices(path: Path) -> list[np.ndarray]:
    """An index file: one array of row indices per non-empty line."""
    return [
        np.array(line.split(), dtype=np.int64)
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def read_data(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """A ``*_R.dat`` file -> (features as floats, integer class labels)."""
    frame = pd.read_csv(path, sep=r"\s+")
    if isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0:
        frame = frame.iloc[:, 1:]  # the header named the row-number column too
    X = frame.iloc[:, :-1].astype(np.float64)
    y = frame.iloc[:, -1].to_numpy()
    return X.reset_index(drop=True), y.astype(np.int64)


def load(ref: DatasetRef, ctx: LoadContext) -> Task:
    """Load one dataset of the collection with its 4 outer folds and its selection split."""
    root = data_root(ctx)
    folders = scan(root)
    if ref.name not in folders:
        raise unknown(f"UCI-121 dataset in {root}", ref.name, list(folders))
    folder = folders[ref.name]
    try:
        meta = read_metadata(folder / f"{ref.name}.txt")
        if "fich1" not in meta:
            raise DataSourceError(f"{folder / (ref.name + '.txt')} has no 'fich1=' line")
        X, y = read_data(folder / meta["fich1"])
        selection = read_indices(folder / "conxuntos.dat")
        kfold = read_indices(folder / "conxuntos_kfold.dat")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataSourceError(
            f"cannot read UCI-121 dataset '{ref.name}' in {folder}: {exc}"
        ) from None
    n = len(y)
    expected = int(meta.get("n_patrons1", n))
    if n != expected:
        raise DataSourceError(
            f"UCI-121 dataset '{ref.name}': {meta['fich1']} has {n} rows, its metadata says {expected}"
        )
    if len(selection) < 2 or len(kfold) < 2 * N_FOLDS:
        raise DataSourceError(
            f"UCI-121 dataset '{ref.name}': expected 2 lines in conxuntos.dat and "
            f"{2 * N_FOLDS} in conxuntos_kfold.dat, found {len(selection)} and {len(kfold)}"
        )
    for indices in [*selection[:2], *kfold[: 2 * N_FOLDS]]:
        if len(indices) and (indices.min() < 0 or indices.max() >= n):
            raise DataSourceError(
                f"UCI-121 dataset '{ref.name}': an index file points outside the {n} rows of "
                f"{meta['fich1']} (range {indices.min()}..{indices.max()})"
            )
    n_folds = min(ctx.folds, N_FOLDS)
    splits = tuple(Split(i, kfold[2 * i], kfold[2 * i + 1]) for i in range(n_folds))
    X.columns = [str(c) for c in X.columns]
    return Task(
        name=ref.name,
        kind="classification",
        X=X,
        y=y,
        categorical=(),
        splits=splits,
        source=f"uci121 {folder} (Fernández-Delgado et al. 2014; splits of Arora et al. 2019)",
        selection=Split(-1, selection[0], selection[1]),
    )


def fetch_collection(root: Path, url: str = ARCHIVE_URL) -> list[str]:
    """Download and unpack the collection's public archive into ``root``; return the datasets."""
    probe(url, what="the UCI-121 archive host", hint=fetch_hint(root))
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        archive = Path(tmp) / "data.tar.gz"
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_SECONDS) as response:  # noqa: S310
                with archive.open("wb") as out:
                    shutil.copyfileobj(response, out)
            with tarfile.open(archive) as tar:
                if hasattr(tarfile, "data_filter"):  # refuses links and paths outside the folder
                    tar.extractall(Path(tmp) / "unpacked", filter="data")
                else:  # pragma: no cover - Python before 3.10.12 / 3.11.4
                    tar.extractall(Path(tmp) / "unpacked")  # noqa: S202
        except (OSError, tarfile.TarError) as exc:
            raise DataSourceError(f"cannot download {url}: {exc}", hint=fetch_hint(root)) from None
        unpacked = Path(tmp) / "unpacked"
        # the archive holds one top folder (data/) around the dataset folders
        inner = [p for p in unpacked.iterdir() if p.is_dir()]
        top = (
            inner[0]
            if len(inner) == 1 and not (inner[0] / f"{inner[0].name}.txt").exists()
            else unpacked
        )
        for folder in top.iterdir():
            if folder.is_dir() and not (root / folder.name).exists():
                shutil.move(str(folder), root / folder.name)
    return list(scan(root))
