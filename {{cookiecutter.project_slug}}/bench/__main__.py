"""Command line: `python -m bench [--quick] [options]`; see `python -m bench --help`."""

import argparse
import os
import sys
import time
from pathlib import Path

from . import report, runner
from .scenarios import Config
from .stack import Stack
from tools.native import PROJECT_ROOT

# (default, quick): the defaults follow the articles (300 requests, 100 concurrent, 0.5 s).
PRESETS = {
    "requests": (300, 40),
    "concurrency": (100, 20),
    "sweep": ([100, 200, 400], [20, 80]),
    "waves": (8, 2),
    "wait": (0.5, 0.1),
    "max_seconds": (90.0, 20.0),
    "anti_seconds": (20.0, 10.0),
    "full_requests": (3000, 300),
    "full_concurrency": (10, 10),
    "workers_concurrency": (20, 20),
    "cpu_n": (100_000, 30_000),
    "cpu_requests": (24, 8),
    "cpu_concurrency": (4, 4),
    "overhead_requests": (10_000, 300),
    "overhead_rounds": (6, 2),
    "loadgen_requests": (20_000, 2000),
    "poll_interval": (0.02, 0.02),
    "probe_interval": (0.02, 0.05),
    "item_count": (100, 20),
}
HELP = {
    "requests": "requests per wait row at the articles' load",
    "concurrency": "concurrent requests per wait row at the articles' load (a sweep level too)",
    "sweep": "concurrency levels of the sweep",
    "waves": "a sweep row sends waves x concurrency requests",
    "wait": "seconds each wait row's request waits (sleep, pg_sleep, upstream delay)",
    "max_seconds": "a row stops after this long",
    "anti_seconds": "a blocking anti-pattern row stops after this long (it serves 1 / wait req/s)",
    "full_requests": "requests per full-speed row (items, overhead)",
    "full_concurrency": "concurrent requests per full-speed row",
    "workers_concurrency": "concurrent requests per worker-process row (at most a worker's pool, 20)",
    "cpu_n": "a CPU job counts the primes below n",
    "cpu_requests": "jobs per CPU row",
    "cpu_concurrency": "concurrent jobs per CPU row",
    "overhead_requests": "requests per overhead round",
    "overhead_rounds": "alternated rounds of bare FastAPI vs the app (best kept)",
    "loadgen_requests": "requests to measure the load generator's own ceiling",
    "poll_interval": "seconds between polls of a Celery job",
    "probe_interval": "seconds between loop-lag probes",
    "item_count": "items created for the full-speed item reads",
}


def parse(argv: list[str]) -> tuple[Config, Path]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (the tests'); not for figures")
    parser.add_argument(
        "--only", nargs="+", metavar="KEY", help="rows whose key starts with KEY (e.g. io.db cpu overhead)"
    )
    parser.add_argument(
        "--output-dir", type=Path, default=PROJECT_ROOT / "bench-results", help="results go here"
    )
    for name, (default, quick) in PRESETS.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=int if isinstance(default, list) else type(default),
            nargs="+" if isinstance(default, list) else None,
            default=None,
            help=f"{HELP[name]} (default {default}, quick {quick})",
        )
    args = parser.parse_args(argv)
    values = {
        name: getattr(args, name) if getattr(args, name) is not None else preset[args.quick]
        for name, preset in PRESETS.items()
    }
    # The articles' load is a level of the sweep: its anti-patterns are compared with the sweep's rows.
    values["sweep"] = sorted({*values["sweep"], values["concurrency"]})
    return Config(quick=args.quick, only=args.only, **values), args.output_dir


class Progress:
    """One line rewritten in place on a terminal; when piped (CI logs), a line every few seconds."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last_title = ""
        self.last_time = 0.0

    def __call__(self, line: str, final: bool) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            title, now = line.split("  ", 1)[0], time.monotonic()
            if title == self.last_title and now - self.last_time < 5 and not final:
                return
            self.last_title, self.last_time = title, now
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    config, output_dir = parse(sys.argv[1:] if argv is None else argv)
    os.chdir(PROJECT_ROOT)  # .env, docker-compose.yml and the services' cwd
    print(f"bench: starting the stack (logs in {output_dir / 'logs'})", file=sys.stderr)
    with Stack(output_dir / "logs") as stack:
        results = runner.run_all(config, stack, Progress())
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    paths = report.write(results, output_dir)
    print(paths["markdown"].read_text())
    print("written: " + ", ".join(str(path) for path in paths.values()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
