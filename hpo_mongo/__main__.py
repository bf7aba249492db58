"""``python -m hpo_mongo``: the ``hpo-mongo`` CLI (``--version`` works without a server)."""
import sys


def main() -> None:
    try:
        from .cli.main import cli
    except ImportError:
        from ._version import __version__
        if "--version" in sys.argv[1:]:
            print(f"hpo_mongo {__version__}")
            return
        raise
    cli(prog_name="hpo-mongo")


if __name__ == "__main__":
    main()
