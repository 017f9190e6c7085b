"""`python -m stackfleet` and the console script: import the CLI only when called."""

import sys


def main() -> None:
    from stackfleet.cli.main import run

    sys.exit(run())


if __name__ == "__main__":
    main()
