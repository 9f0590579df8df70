"""docs/benchmark.md, the one page with measured figures, rendered from its JSON and nothing else.

`make bench` runs `python -m bench.page bench-results/bench.json docs`: the run's JSON is copied to
docs/benchmark.json and the page is rendered from that copy, so the page and its JSON always agree.
`--check` renders the page again and fails if the file on disk differs (a figure edited by hand).
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from . import report
from .results import LagSummary, Measured, OpenLoop, Overhead, ProfileEntry, Report, Target
from .scenarios import Config, Limits

PAGE = "benchmark.md"
DATA = "benchmark.json"
HEADER = """\
# Benchmark

Every figure below was measured by `make bench` and rendered by `python -m bench.page` from the
run's JSON, `{data}` (every figure and setting of the run): nothing here is typed by hand, and
`python -m bench.page --check` fails if anything is. To measure your own machine,
bake with `include_benchmarks=yes`, then run `make bench`: it rewrites this page and its JSON.
That option ships the load generator (`bench/`, whose files this page names) and the JSON; the
default bake ships this page alone. What each setting means: `config.py`.

"""


def nested(row: dict) -> dict:
    """A row's dataclasses inside it, from their dicts."""
    open_loop = row.get("open_loop")
    if open_loop:
        open_loop = OpenLoop(**{**open_loop, "lag": lag(open_loop["lag"])})
    return {"lag": lag(row["lag"]), "open_loop": open_loop}


def lag(summary: dict | None) -> LagSummary | None:
    return LagSummary(**summary) if summary else None


def load(data: dict) -> Report:
    """The Report a run wrote, back from its JSON (`dataclasses.asdict` on the way out)."""
    fields = dict(data)
    fields["config"] = Config(**data["config"])
    fields["limits"] = Limits(**data["limits"])
    fields["overhead"] = Overhead(**data["overhead"])
    fields["targets"] = [Target(**target) for target in data["targets"]]
    fields["profile"] = [ProfileEntry(**entry) for entry in data.get("profile", [])]
    fields["rows"] = [Measured(**{**row, **nested(row)}) for row in data["rows"]]
    return Report(**fields)


def render(data_path: Path) -> str:
    return HEADER.format(data=data_path.name) + report.markdown(load(json.loads(data_path.read_text())))


def publish(results: Path, docs: Path) -> Path:
    """The run's JSON into docs/, and the page rendered from it."""
    docs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(results, docs / DATA)
    page = docs / PAGE
    page.write_text(render(docs / DATA))
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.page", description=__doc__)
    parser.add_argument("results", type=Path, help="a run's bench.json (with --check: docs/benchmark.json)")
    parser.add_argument("docs", type=Path, nargs="?", default=Path("docs"), help="the docs folder")
    parser.add_argument("--check", action="store_true", help="only compare the page with its JSON")
    args = parser.parse_args(argv)
    if not args.check:
        print(f"written: {publish(args.results, args.docs)}", file=sys.stderr)
        return 0
    page = args.docs / PAGE
    if page.read_text() != render(args.results):
        print(f"{page} is not what {args.results} renders: run python -m bench.page", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
