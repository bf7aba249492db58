"""``python -m hpo_mongo``: the ``hpo-mongo`` CLI."""
from .cli.main import cli


def main() -> None:
    cli(prog_name="hpo-mongo")


if __name__ == "__main__":
    main()
