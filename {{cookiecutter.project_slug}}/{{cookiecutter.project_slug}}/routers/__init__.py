"""The routers the app serves, in the order their routes are matched. A module in this folder serves
nothing until it is listed here, so a helper module beside the routers is only a module."""

from . import async_io, cpu, health{% if cookiecutter.use_celery == "yes" %}, jobs{% endif %}, mixed, sync_io

ROUTERS = [
    health.router,  # first: the probes are the most frequent requests, and the first routes matched
    async_io.router,
    sync_io.router,
    mixed.router,
    cpu.router,
{%- if cookiecutter.use_celery == "yes" %}
    jobs.router,
{%- endif %}
]
