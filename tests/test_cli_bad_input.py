"""No bad input gets past the door: every option of every command, given a bad value, ends with
exit status 2 and one ``error:`` line naming the option and the value as typed, before any data is
read or job run, and without writing anything. Also: files we write get their mode from the umask.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from rfmbench.cli import app
from rfmbench.files import write_atomic
from rfmbench.results import append_row, write_frame, write_metadata
from tests.test_cli_datasets import one_error_line

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]

# Small settings, so that a check that wrongly let a value through still ends quickly.
SMALL = ["--suite", "embedded", "--datasets", "iris", "--models", "kernel-ridge", "--folds", "2"]
SMALL += ["--inner-folds", "2", "--budget", "1", "--device", "cpu", "--jobs", "1"]
RUN = ["run", *SMALL, "--out", "{out}"]

# (command line, fragment of the one error line). {out}: the results folder (not there yet);
# {file}: an existing plain file; {dir}: an existing folder; {csv}: a valid data file;
# {results}: a valid results file.
CASES = [
    # the six a new user found
    ([*RUN, "--seed", "-1"], "--seed must be an integer from 0 to 4294967295, got -1"),
    (["run", *SMALL, "--out", "{file}"], "--out must be a folder, but '{file}' is a file"),
    ([*RUN, "--run-id", "a/b"], "--run-id must be a plain file name"),
    ([*RUN, "--run-id", "../x"], "'../x' contains a path separator"),
    ([*RUN, "--run-id", ""], "--run-id must be a plain file name (letters, digits and -_.+=@, "),
    ([*RUN, "--run-id", " "], "' ' starts or ends with white space"),
    # run: every other option
    ([*RUN, "--run-id", ".hidden"], "'.hidden' starts with '.'"),
    ([*RUN, "--run-id", "a b"], "'a b' contains ' '"),
    ([*RUN, "--run-id", "x\ty"], "'x\\ty' contains '\\t'"),
    ([*RUN, "--run-id", "x-leaderboard"], "'x-leaderboard' ends like a run's derived files"),
    ([*RUN, "--seed", "4294967296"], "--seed must be an integer from 0 to 4294967295, got 42949"),
    ([*RUN, "--seed", "one"], "Invalid value for '--seed'"),
    (["run", *SMALL, "--out", "{file}/sub"], "--out must be a folder, but '{file}/sub' is inside"),
    ([*RUN, "--suite", "nope"], "unknown suite 'nope'"),
    ([*RUN, "--datasets", "nope"], "'nope'; choose from"),
    ([*RUN, "--datasets", ","], "--datasets names no dataset"),
    ([*RUN, "--models", ""], "--models names no model"),
    ([*RUN, "--models", "rfm,nope"], "unknown model 'nope'"),
    ([*RUN, "--folds", "1"], "--folds must be at least 2, got 1"),
    ([*RUN, "--folds", "two"], "Invalid value for '--folds'"),
    ([*RUN, "--folds", "1000"], "--folds 1000 is too many"),
    ([*RUN, "--inner-folds", "1"], "--inner-folds must be at least 2, got 1"),
    ([*RUN, "--budget", "0"], "--budget must be at least 1, got 0"),
    ([*RUN, "--device", "gpu"], "--device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ([*RUN, "--retry-failed=yes"], "--retry-failed"),
    ([*RUN, "--jobs", "-1"], "--jobs must be at least 1 (or 0: as many as fit), got -1"),
    ([*RUN, "--threads", "0"], "--threads must be at least 1, got 0"),
    ([*RUN, "--executor", "slurm"], "--executor must be one of local, ray, got 'slurm'"),
    ([*RUN, "--ray-address", "head:6379"], "--ray-address needs --executor ray"),
    ([*RUN, "--time-limit", "0"], "--time-limit must be a positive number of seconds, got 0"),
    ([*RUN, "--time-limit", "nan"], "--time-limit must be a positive number of seconds, got nan"),
    (
        [*RUN, "--protocol", "fast"],
        "--protocol must be one of default, paper, paper-clean, got 'fast'",
    ),
    ([*RUN, "--protocol", "paper"], "--protocol paper needs datasets with a fixed selection"),
    ([*RUN, "--precision", "half"], "--precision must be one of float32, float64, got 'half'"),
    (["run", "--data", "nope.csv", "--target", "y", "--out", "{out}"], "data file nope.csv"),
    (["run", "--data", "{file}", "--target", "y", "--out", "{out}"], "--data: cannot tell the"),
    (["run", "--data", "{csv}", "--out", "{out}"], "--data needs --target"),
    (["run", "--data", "{csv}", "--target", "y", "--kind", "both"], "--kind must be one of"),
    ([*RUN, "--data", "{csv}", "--target", "y"], "--datasets cannot be used with --data"),
    ([*RUN, "--target", "y"], "--target needs --data"),
    ([*RUN, "--categorical", "a"], "--categorical needs --data"),
    ([*RUN, "--kind", "regression"], "--kind needs --data"),
    ([*RUN, "--data-dir", "{file}"], "--data-dir must be a folder, but '{file}' is a file"),
    ([*RUN, "--cache-dir", "{file}"], "--cache-dir must be a folder, but '{file}' is a file"),
    ([*RUN, "--offline=3"], "Option '--offline' does not take a value"),
    ([*RUN, "--nope", "1"], "No such option: --nope"),
    # compare
    (["compare", "missing.csv"], "results file not found: missing.csv"),
    (["compare", "nothing-*.csv"], "no results file matches nothing-*.csv"),
    (["compare", "{results}", "--metric", "f1"], "unknown metric 'f1'"),
    (["compare", "{results}", "--out", "{dir}"], "--out must be a file name, but '{dir}'"),
    (["compare", "{results}", "--out", "{file}/x.csv"], "--out must be a folder, but '{file}"),
    (["compare", "{results}", "--plot", "cd.nope"], "--plot: cannot write a figure as '.nope'"),
    (["compare", "{results}", "--plot", "{dir}"], "--plot must be a file name, but '{dir}'"),
    (["compare", "{results}", "--plot-dir", "{file}"], "--plot-dir must be a folder, but '{file}"),
    (["compare", "{results}", "--pair", "rfm"], "--pair needs two different comma-separated"),
    (["compare", "{results}", "--pair", "rfm,rfm"], "got 'rfm,rfm'"),
    (["compare", "{results}", "--seed", "-1"], "--seed must be an integer from 0 to 4294967295"),
    (["compare"], "Missing argument 'files'"),
    # models, suites
    (["models", "--details=2"], "Option '--details' does not take a value"),
    (["suites", "--all"], "No such option: --all"),
    # datasets list / fetch / info
    (["datasets", "list", "--suite", "nope"], "unknown suite 'nope'"),
    (["datasets", "list", "--data-dir", "{file}"], "--data-dir must be a folder, but '{file}'"),
    (["datasets", "list", "--cache-dir", "{file}"], "--cache-dir must be a folder, but '{file}'"),
    (["datasets", "fetch"], "Missing option '--suite'"),
    (["datasets", "fetch", "--suite", "nope"], "unknown suite 'nope'"),
    (["datasets", "fetch", "--suite", "tabular", "--datasets", ","], "--datasets names no"),
    (["datasets", "fetch", "--suite", "tabular", "--cache-dir", "{file}"], "--cache-dir must be"),
    (["datasets", "fetch", "--suite", "uci121", "--data-dir", "{file}"], "--data-dir must be"),
    (["datasets", "info", "nope"], "unknown dataset 'nope'"),
    (["datasets", "info", "iris", "--suite", "nope"], "unknown suite 'nope'"),
    (["datasets", "info", "iris", "--folds", "1"], "--folds must be at least 2, got 1"),
    (["datasets", "info", "iris", "--target", "y"], "--target needs --data"),
    (["datasets", "info", "iris", "--categorical", "a"], "--categorical needs --data"),
    (["datasets", "info", "iris", "--kind", "x"], "--kind needs --data"),
    (["datasets", "info", "--data", "nope.csv", "--target", "y"], "--data: data file nope.csv"),
    (["datasets", "info", "--data", "{csv}"], "--data needs --target"),
    (["datasets", "info", "--data", "{csv}", "--target", "y", "--kind", "x"], "--kind must be"),
    (["datasets", "info", "iris", "--data", "{csv}", "--target", "y"], "not both"),
    (["datasets", "info", "iris", "--data-dir", "{file}"], "--data-dir must be a folder"),
    (["datasets", "info", "iris", "--cache-dir", "{file}"], "--cache-dir must be a folder"),
    (["datasets", "info", "iris", "--offline=1"], "Option '--offline' does not take a value"),
]


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
    }


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A working folder inside ``tmp_path`` (so '../x' lands in tmp_path, where it is seen),
    with a plain file, a folder, a data file and a results file; the cache is an unused folder
    there."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "afile").write_text("not a folder\n")
    (work / "adir").mkdir()
    pd.DataFrame({"a": [1, 2, 3, 4], "y": ["p", "q", "p", "q"]}).to_csv(work / "d.csv", index=False)
    for fold in range(2):
        append_row(
            work / "run.csv",
            {"run_id": "run", "dataset": "d", "task_kind": "classification", "fold": fold}
            | {"model": "rfm", "status": "ok", "accuracy": 0.9},
        )
    monkeypatch.chdir(work)
    monkeypatch.setenv("RFMBENCH_CACHE_DIR", str(tmp_path / "cache"))
    yield {"out": "out", "file": "afile", "dir": "adir", "csv": "d.csv", "results": "run.csv"}


@pytest.mark.parametrize(("args", "fragment"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_a_bad_value_ends_with_one_line_exit_2_and_nothing_written(
    tmp_path: Path, workdir: dict[str, str], args: list[str], fragment: str, monkeypatch
) -> None:
    import rfmbench.benchmark

    def no_jobs(*args, **kwargs):
        raise AssertionError("jobs ran before the mistake was caught")

    monkeypatch.setattr(rfmbench.benchmark, "run_plan", no_jobs)
    args = [a.format(**workdir) for a in args]
    fragment = fragment.format(**workdir)
    before = tree(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    line = one_error_line(result.stderr)  # exactly one line, "error: ...", no traceback
    assert fragment in line, line
    assert result.stdout == ""
    # Nothing written anywhere, inside --out or outside it ('../x' included).
    assert tree(tmp_path) == before  # and no job ran: run_plan would have raised


def test_a_bad_value_in_a_real_subprocess(tmp_path: Path) -> None:
    """`python -m rfmbench`: exit status 2 and one line on stderr, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "rfmbench", "run", "--run-id", "../x", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 2
    assert "'../x' contains a path separator" in one_error_line(result.stderr)
    assert list(tmp_path.iterdir()) == [] and not (tmp_path.parent / "x.csv").exists()


def test_the_library_gives_python_users_the_same_errors(tmp_path: Path) -> None:
    from rfmbench.comparison.stats import check_options
    from rfmbench.errors import BadOption
    from rfmbench.files import check_out_dir

    with pytest.raises(BadOption, match="--seed must be an integer from 0 to 4294967295"):
        check_options(seed=-1)
    with pytest.raises(BadOption, match="--pair needs two different"):
        check_options(pair=["rfm"])
    assert check_options(pair="rfm, mlp") == ("rfm", "mlp")
    (tmp_path / "f").write_text("")
    with pytest.raises(BadOption, match="--out must be a folder, but '.*f' is a file"):
        check_out_dir(tmp_path / "f")
    assert check_out_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checked, not created


def test_a_single_class_shows_the_value_as_written(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("a,y\n1,2\n2,2\n3,2\n")
    result = runner.invoke(app, ["datasets", "info", "--data", str(path), "--target", "y"])
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert "has a single class (2); nothing to classify" in line and "np." not in line


@pytest.fixture(params=[0o022, 0o077, 0o002, 0o027])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_we_write_get_their_mode_from_the_umask(tmp_path: Path, umask: int) -> None:
    from matplotlib.figure import Figure

    from rfmbench.comparison.plots import save_figure
    from rfmbench.sources.cache import write_dir_atomically
    from rfmbench.suites import write_lock

    # What open() would give a new file and os.mkdir a new folder under this umask.
    (tmp_path / "plain").write_text("x")
    expected_file, expected_dir = 0o666 & ~umask, 0o777 & ~umask
    assert mode(tmp_path / "plain") == expected_file

    write_atomic(tmp_path / "a.txt", "text")
    write_atomic(tmp_path / "b.bin", b"\x00\x01")
    write_frame(tmp_path / "board.csv", pd.DataFrame({"a": [1]}))
    write_metadata(tmp_path / "run.json", {"seed": 0})
    append_row(tmp_path / "run.csv", {"dataset": "d", "fold": 0, "model": "m", "status": "ok"})
    write_lock(tmp_path / "s.lock.toml", {"suite": "s"}, [{"name": "d"}])
    save_figure(Figure(), tmp_path / "fig.png")
    write_dir_atomically(tmp_path / "cached", lambda folder: (folder / "m.json").write_text("{}"))
    for name in ("a.txt", "b.bin", "board.csv", "run.json", "run.csv", "s.lock.toml", "fig.png"):
        assert oct(mode(tmp_path / name)) == oct(expected_file), name
    assert oct(mode(tmp_path / "cached")) == oct(expected_dir)
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    # No temporary files left behind.
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_real_run_writes_readable_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Through the CLI, the rows, the metadata and the leaderboard: 0644 under umask 022."""
    monkeypatch.setenv("RFMBENCH_CACHE_DIR", str(tmp_path / "cache"))
    previous = os.umask(0o022)
    try:
        result = runner.invoke(
            app, ["run", *SMALL, "--out", str(tmp_path / "out"), "--run-id", "r"]
        )
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.endswith(".lock"))
    assert written == ["r-leaderboard.csv", "r.csv", "r.json"]
    for name in written:
        assert oct(mode(tmp_path / "out" / name)) == oct(0o644), name


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("results/run-20250101-120000.csv", True),
        ("results/run-20250101-120000-leaderboard.csv", True),
        ("results/sub/x.json", True),
        ("results/reproduce.csv", False),  # the committed reference stays tracked
        ("results/run.csv.lock", True),
        ("datasets/suites/tabular.lock", True),
        ("datasets/suites/tabular.lock.toml", False),  # a suite's pinned ids are committed
    ],
)
def test_runs_of_users_do_not_clutter_git_status(path: str, ignored: bool) -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", path], cwd=REPO, capture_output=True
    )
    assert result.returncode == (0 if ignored else 1), (path, result.stderr)
