"""The command line: the only module that imports typer. Each command calls one library function
and renders what comes back."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from rfmbench import __version__, render
from rfmbench.config import RunConfig
from rfmbench.errors import RfmbenchError


class OneLineErrors(TyperGroup):
    """Render typer's own parsing errors (unknown option, value of the wrong type, missing
    argument) as one ``error:`` line and exit 2, like the package's errors, instead of a usage
    block and a framed panel."""

    def main(self, args: Sequence[str] | None = None, *rest: Any, **options: Any) -> Any:
        if options.get("standalone_mode", True) is False:
            return super().main(args, *rest, **options)
        args = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(args, *rest, **{**options, "standalone_mode": False})
        except typer.Abort:
            render.error("aborted")
            sys.exit(1)
        except Exception as exc:
            # typer carries its own click; its errors are recognised by their interface.
            if not hasattr(exc, "format_message") or not hasattr(exc, "exit_code"):
                raise
            if type(exc).__name__ == "NoArgsIsHelpError":  # help was printed already
                sys.exit(exc.exit_code)
            render.error(_one_line(exc, args), hint=_help_hint(exc))
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


def _one_line(exc: Exception, args: list[str]) -> str:
    """The parser's message on one line, with the value as typed when it names a bad value."""
    message = " ".join(exc.format_message().split())
    param = getattr(exc, "param", None)
    if type(exc).__name__ == "BadParameter" and param is not None:
        typed = _typed_value(args, list(getattr(param, "opts", [])))
        if typed is not None:
            message += f", got '{typed}'"
    return message


def _typed_value(args: list[str], opts: list[str]) -> str | None:
    """The value given to the option ``opts`` on the command line (the last one wins)."""
    found = None
    for i, arg in enumerate(args):
        for opt in opts:
            if arg == opt and i + 1 < len(args):
                found = args[i + 1]
            elif arg.startswith(opt + "="):
                found = arg[len(opt) + 1 :]
    return found


def _help_hint(exc: Exception) -> str | None:
    ctx = getattr(exc, "ctx", None)
    return f"see `{ctx.command_path} --help`" if ctx is not None else None


app = typer.Typer(
    cls=OneLineErrors,
    help="Benchmark Recursive Feature Machines against tuned baselines on real tabular data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

DEFAULTS = RunConfig()  # the run command's option defaults are the library's


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user's mistake into one line on stderr and exit 2; a bug keeps its traceback."""
    try:
        yield
    except RfmbenchError as exc:
        render.error(str(exc), hint=exc.hint)
        raise typer.Exit(2) from None


def parse_list(value: str | None) -> list[str] | None:
    """'a, b,c' -> ['a', 'b', 'c']; not given -> None; given but empty ('', ',') -> [].

    An empty list is passed on, not read as "not given", so ``--models ''`` is an error rather
    than a run of the default models.
    """
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def _version(value: bool) -> None:
    if value:
        render.info(f"rfmbench {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Benchmark Recursive Feature Machines against tuned baselines on real tabular data."""


DataOption = Annotated[
    Path | None,
    typer.Option(
        help="A CSV, Parquet or ARFF file to benchmark instead of a suite (needs --target)."
    ),
]
TargetOption = Annotated[str | None, typer.Option(help="The target column of --data.")]
CategoricalOption = Annotated[
    str | None,
    typer.Option(help="Comma-separated categorical columns of --data (default: detected)."),
]
KindOption = Annotated[
    str | None,
    typer.Option(help="classification or regression for --data (default: inferred)."),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(help="Folder of a collection's files (uci121: the unpacked archive)."),
]
CacheDirOption = Annotated[
    Path | None,
    typer.Option(
        help="Cache for downloaded data (default: $RFMBENCH_CACHE_DIR, else datasets/cache)."
    ),
]
OfflineOption = Annotated[
    bool, typer.Option(help="Never touch the network; use only cached or local data.")
]


@app.command()
def run(
    suite: Annotated[str, typer.Option(help="Suite name; see `rfmbench suites`.")] = DEFAULTS.suite,
    datasets: Annotated[
        str | None, typer.Option(help="Comma-separated dataset names (default: the whole suite).")
    ] = None,
    models: Annotated[str, typer.Option(help="Comma-separated model names.")] = ",".join(
        DEFAULTS.models
    ),
    folds: Annotated[
        int, typer.Option(help="Outer folds (stratified for classification).")
    ] = DEFAULTS.folds,
    inner_folds: Annotated[
        int, typer.Option(help="Inner CV folds for tuning.")
    ] = DEFAULTS.inner_folds,
    budget: Annotated[
        int, typer.Option(help="Configurations tried per model (same for all).")
    ] = DEFAULTS.budget,
    seed: Annotated[int, typer.Option(help="Seed for splits, tuning and models.")] = DEFAULTS.seed,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = DEFAULTS.device,
    out: Annotated[Path, typer.Option(help="Folder for results.")] = DEFAULTS.out,
    run_id: Annotated[
        str | None,
        typer.Option(help="Run name; an existing one is resumed (default: a timestamp)."),
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option(help="On resume, rerun jobs whose rows are failed or timeout.")
    ] = False,
    jobs: Annotated[
        int,
        typer.Option(
            help="Jobs run at once, each in its own process (0: as many as fit the cores, or one "
            "per GPU; 1: in this process). Results do not depend on it."
        ),
    ] = 0,
    threads: Annotated[
        int,
        typer.Option(
            help="Threads per job (torch, BLAS, forest), the same under every executor so the "
            "rows are too."
        ),
    ] = 1,
    executor: Annotated[
        str, typer.Option(help="local (processes on this machine) or ray (a Ray cluster).")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster to join, e.g. HEAD:6379 (default: a Ray runtime on this machine)."
        ),
    ] = None,
    time_limit: Annotated[
        float | None,
        typer.Option(help="Seconds per job; a job over it becomes a `timeout` row."),
    ] = None,
    protocol: Annotated[
        str,
        typer.Option(
            help="default (inner K-fold tuning), paper (the RFM paper's uci121 protocol, exactly) "
            "or paper-clean (its grids and folds without the leak)."
        ),
    ] = "default",
    precision: Annotated[
        str | None,
        typer.Option(
            help="float32 or float64 for the torch models (default: each model's own, float32)."
        ),
    ] = None,
    data: DataOption = None,
    target: TargetOption = None,
    categorical: CategoricalOption = None,
    kind: KindOption = None,
    data_dir: DataDirOption = None,
    cache_dir: CacheDirOption = None,
    offline: OfflineOption = False,
) -> None:
    """Benchmark MODELS on SUITE, write OUT/RUN_ID.csv and print the ranked leaderboard."""
    # Long only in its signature (typer reads each option from it); the body builds a RunConfig,
    # makes one library call (rfmbench.run) and renders.
    from rfmbench.benchmark import run as run_benchmark
    from rfmbench.config import RunConfig

    def planned(plan, n_to_run: int) -> None:
        run_ids.append(plan.config.run_id)
        render.info(
            f"run {plan.config.run_id}: {len(plan.tasks)} datasets, "
            f"{len(plan.config.models)} models, {len(plan.jobs)} jobs "
            f"({n_to_run} to run) on {plan.job_config.device}"
        )

    run_ids: list[str] = []
    with user_errors():
        config = RunConfig(
            suite=suite,
            datasets=_tuple(parse_list(datasets)),
            models=_tuple(parse_list(models)),
            folds=folds,
            inner_folds=inner_folds,
            budget=budget,
            seed=seed,
            protocol=protocol,
            precision=precision,
            threads=threads,
            device=device,
            workers=jobs,
            executor=executor,
            ray_address=ray_address,
            time_limit=time_limit,
            out=out,
            run_id=run_id,
            retry_failed=retry_failed,
            data=data,
            target=target,
            categorical=_tuple(parse_list(categorical)),
            kind=kind,
            data_dir=data_dir,
            cache_dir=cache_dir,
            offline=offline,
        )
        try:
            result = run_benchmark(config, on_planned=planned, progress=render.job_progress)
        except KeyboardInterrupt:
            resume = f"; resume with --run-id {run_ids[0]}" if run_ids else ""
            render.error(f"interrupted; finished rows are kept{resume}")
            raise typer.Exit(130) from None
        render.leaderboard(result.leaderboard, title=f"Leaderboard {result.config.run_id}")
        render.info(f"results: {result.results_path}\nleaderboard: {result.leaderboard_path}")


def _tuple(values: list[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)


@app.command()
def suites() -> None:
    """List the suites and their datasets."""
    import pandas as pd

    from rfmbench.suites import all_suites

    with user_errors():
        rows = [
            {
                "suite": s.name,
                "source": s.source,
                "datasets": len(s.datasets),
                "description": s.description,
            }
            for s in all_suites().values()
        ]
        render.show_table(pd.DataFrame(rows), title="Suites")


@app.command()
def models(
    details: Annotated[bool, typer.Option(help="Also show search spaces and defaults.")] = False,
) -> None:
    """List the models, whether each is installed, and (with --details) their search spaces."""
    import pandas as pd

    from rfmbench.models.registry import MODELS

    rows = []
    for spec in MODELS.values():
        row = {"model": spec.name, "available": spec.available(), "summary": spec.summary}
        if details:
            row["defaults"] = ", ".join(f"{k}={v}" for k, v in spec.defaults.items())
            row["search space"] = "; ".join(f"{k}: {_describe(v)}" for k, v in spec.space.items())
        rows.append(row)
    render.show_table(pd.DataFrame(rows), title="Models")


def _describe(axis: object) -> str:
    """A search-space axis in words: a grid's values or a distribution's name and range."""
    if isinstance(axis, list | tuple):
        return "{" + ", ".join(str(v) for v in axis) + "}"
    dist = getattr(axis, "dist", None)
    if dist is not None:
        low, high = axis.support()
        return f"{dist.name}[{low:g}, {high:g}]"
    return str(axis)


@app.command()
def compare(
    files: Annotated[
        list[str], typer.Argument(help="Results CSVs of `rfmbench run` (globs allowed).")
    ],
    metric: Annotated[
        str | None,
        typer.Option(
            help="accuracy, balanced_accuracy, log_loss, roc_auc (classification) or rmse, "
            "mae, r2 (regression); only that kind is compared (default: TabArena's per task: "
            "roc_auc for binary, log_loss for multiclass, rmse for regression)."
        ),
    ] = None,
    impute_with: Annotated[
        str,
        typer.Option(
            help="Model whose result on a fold replaces another model's failed or missing one; "
            "'none': compare on the common tasks only; 'auto': random-forest when it is in the "
            "results, else none."
        ),
    ] = "auto",
    elo_reference: Annotated[
        str,
        typer.Option(
            help="Model anchored at Elo 1000; 'none': the models average 1000; 'auto': "
            "random-forest when it is in the results, else none."
        ),
    ] = "auto",
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="table (the terminal), csv, markdown, latex or json, on stdout; messages go "
            "to stderr.",
        ),
    ] = "table",
    out: Annotated[
        Path | None, typer.Option(help="Write the comparison table (all kinds) as CSV.")
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Critical difference diagram (PNG/SVG/PDF); with both task kinds, one file "
            "per kind: NAME-classification.png, NAME-regression.png."
        ),
    ] = None,
    plot_dir: Annotated[
        Path | None,
        typer.Option(help="Folder for all figures: CD diagram, rank distribution, pair scatter."),
    ] = None,
    pair: Annotated[
        str | None,
        typer.Option(
            help="Two models for the scatter, e.g. rfm,random-forest (default: rfm "
            "vs the best other)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap intervals.")] = 0,
) -> None:
    """Merge FILES (a later file's row for the same job wins) and rank the models per task kind
    on TabArena's terms (Elo with a 95% interval, improvability, win rate, mean rank, imputed
    failures), run Friedman / Nemenyi / Wilcoxon-Holm tests and optionally write a CSV and plots."""
    # Long only in its signature (typer reads each option from it); the body makes one library
    # call (rfmbench.compare) and renders.
    from rfmbench.benchmark import compare as compare_files
    from rfmbench.comparison.stats import check_options, comparisons_json, summary_frame

    with user_errors():
        check_options(format=format)
        # With a machine-readable format, stdout holds only the data.
        say = render.info if format == "table" else render.note
        result = compare_files(
            files,
            metric=metric,
            impute_with=impute_with,
            elo_reference=elo_reference,
            out=out,
            plot=plot,
            plot_dir=plot_dir,
            pair=pair,
            seed=seed,
        )
        if result.replaced:
            render.warning(
                f"{result.replaced} rows of earlier files were replaced by later files' rows for "
                f"the same (dataset, fold, model)"
            )
        say(f"compared {len(result.paths)} file(s), {len(result.rows)} rows")
        comparisons = result.comparisons
        if format == "table":
            for comparison in comparisons:
                render.comparison(comparison)
        elif format == "csv":
            render.print_text(summary_frame(comparisons).to_csv(index=False))
        elif format == "markdown":
            render.print_text(render.comparisons_markdown(comparisons))
        elif format == "latex":
            render.print_text(render.comparisons_latex(comparisons))
        else:
            render.print_text(comparisons_json(comparisons))
        if result.table_path is not None:
            say(f"table: {result.table_path}")
        for message in result.skipped_figures:
            render.warning(message)
        for path in result.figures:
            say(f"figure: {path}")


datasets_app = typer.Typer(help="List, fetch and describe datasets.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("list")
def datasets_list(
    suite: Annotated[
        str | None, typer.Option(help="Only this suite (default: every suite).")
    ] = None,
    data_dir: DataDirOption = None,
    cache_dir: CacheDirOption = None,
) -> None:
    """List the datasets of SUITE (or of every suite) and whether each is cached."""
    from rfmbench.datasets import list_datasets
    from rfmbench.sources import LoadContext

    with user_errors():
        table = list_datasets(suite, LoadContext(cache_dir=cache_dir, data_dir=data_dir))
        render.show_table(table, title=f"Datasets of {suite}" if suite else "Datasets")


@datasets_app.command("fetch")
def datasets_fetch(
    suite: Annotated[str, typer.Option(help="The suite to download (and, if needed, resolve).")],
    datasets: Annotated[
        str | None, typer.Option(help="Comma-separated dataset names (default: the whole suite).")
    ] = None,
    data_dir: DataDirOption = None,
    cache_dir: CacheDirOption = None,
) -> None:
    """Download SUITE's data into the cache (uci121: into --data-dir) so later runs work offline."""
    import pandas as pd

    from rfmbench.datasets import fetch
    from rfmbench.sources import LoadContext

    def on_item(record: dict) -> None:
        render.info(f"{record['dataset']}: {record['status']}")

    with user_errors():
        records = fetch(
            suite,
            parse_list(datasets),
            LoadContext(cache_dir=cache_dir, data_dir=data_dir),
            on_item=on_item,
        )
        render.show_table(pd.DataFrame(records), title=f"Fetched {suite}")


@datasets_app.command("info")
def datasets_info(
    name: Annotated[
        str | None, typer.Argument(help="Dataset name, or SUITE/NAME (e.g. uci121/abalone).")
    ] = None,
    suite: Annotated[str | None, typer.Option(help="The suite NAME belongs to.")] = None,
    data: DataOption = None,
    target: TargetOption = None,
    categorical: CategoricalOption = None,
    kind: KindOption = None,
    folds: Annotated[int, typer.Option(help="Outer folds (for the splits shown).")] = 5,
    data_dir: DataDirOption = None,
    cache_dir: CacheDirOption = None,
    offline: OfflineOption = False,
) -> None:
    """Describe one dataset: rows, features, classes, categoricals, missing values, source, cache."""
    import pandas as pd

    from rfmbench.datasets import dataset_info
    from rfmbench.sources import LoadContext

    with user_errors():
        context = LoadContext(folds=folds, cache_dir=cache_dir, data_dir=data_dir, offline=offline)
        info = dataset_info(
            name,
            context,
            suite=suite,
            data=data,
            target=target,
            categorical=parse_list(categorical),
            kind=kind,
        )
        table = pd.DataFrame({"field": list(info), "value": [str(v) for v in info.values()]})
        render.show_table(table, title=f"Dataset {info['dataset']}")


def main() -> None:
    app()
