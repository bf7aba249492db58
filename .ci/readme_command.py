"""Print one of the README's two commands: ``quickstart`` or ``tests`` (the line with that comment).

.ci/run runs the README's test command through this script, so CI and a newcomer type the same thing;
tests/test_repo.py checks that both lines exist.
"""
import pathlib
import sys

MARKERS = {"quickstart": "# a real optimization", "tests": "# the tests"}


def command(which: str, readme: pathlib.Path = pathlib.Path(__file__).resolve().parents[1] / "README.md") -> str:
    marker = MARKERS[which]
    for line in readme.read_text().splitlines():
        if marker in line:
            return line.split(marker, 1)[0].strip()
    raise SystemExit(f"README.md has no line marked {marker!r}")


if __name__ == "__main__":
    print(command(sys.argv[1]))
