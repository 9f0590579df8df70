"""`make bench` (python -m bench): the template's claims, measured against the real stack.

Each route pattern runs under load beside its theoretical ceiling (Little's law), with its latency,
errors and the event loop's lag meanwhile; the source articles' scenarios, the real I/O routes, the
CPU routes and the framework's own overhead. Outputs go to bench-results/. Nothing outside bench/
and tests/test_bench.py imports this package (it is removed when include_benchmarks=no).
"""
