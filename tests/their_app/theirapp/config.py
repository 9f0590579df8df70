"""The existing app's own settings: stdlib only, so they bring no package into the venv."""

import os
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Settings:
    greeting: str


@lru_cache
def get_settings() -> Settings:
    return Settings(greeting=os.environ.get("GREETING", "hello"))
