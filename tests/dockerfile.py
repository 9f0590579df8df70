"""A Dockerfile read the way Docker reads it, as far as the tests need: stages of instructions,
each with its flags (--mount, --from) and arguments, continuation lines joined, comments dropped."""

import json
import re
import shlex
from dataclasses import dataclass, field

FLAG = re.compile(r"--([a-z-]+)=(\S+)\s+")


@dataclass
class Instruction:
    keyword: str  # upper case: RUN, COPY, ENV, ...
    arguments: str  # after the flags
    flags: list[tuple[str, str]] = field(default_factory=list)  # in order; --mount may repeat

    def flag(self, name: str) -> str | None:
        return next((value for key, value in self.flags if key == name), None)

    def mounts(self) -> list[dict[str, str]]:
        """--mount=type=cache,target=/x as {"type": "cache", "target": "/x"}."""
        return [
            dict(part.split("=", 1) for part in value.split(","))
            for key, value in self.flags
            if key == "mount"
        ]

    def argv(self) -> list[str]:
        """The exec (JSON) form of CMD or ENTRYPOINT."""
        return json.loads(self.arguments)

    def env(self) -> dict[str, str]:
        """ENV key=value pairs (the only ENV form the template uses)."""
        return dict(pair.split("=", 1) for pair in shlex.split(self.arguments))


@dataclass
class Stage:
    name: str | None
    instructions: list[Instruction]

    def of(self, keyword: str) -> list[Instruction]:
        return [instruction for instruction in self.instructions if instruction.keyword == keyword]


def logical_lines(text: str) -> list[str]:
    """Docker's lines: a trailing backslash continues one, and comment lines vanish even inside one."""
    lines, current = [], ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") or (not raw.strip() and not current):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        lines.append((current + raw).strip())
        current = ""
    return [line for line in lines if line]


def parse(line: str) -> Instruction:
    keyword, _, rest = line.partition(" ")
    rest = rest.strip() + " "
    flags = []
    while match := FLAG.match(rest):
        flags.append((match.group(1), match.group(2)))
        rest = rest[match.end() :]
    return Instruction(keyword.upper(), rest.strip(), flags)


def stages(text: str) -> list[Stage]:
    """Every FROM starts a stage; what comes before the first (ARG) belongs to none."""
    found: list[Stage] = []
    for instruction in map(parse, logical_lines(text)):
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(name, []))
        elif found:
            found[-1].instructions.append(instruction)
    return found
