"""`python -m stackfleet` and the console script: import the CLI only when called."""

import gc
import sys


def main() -> None:
    from stackfleet.cli.main import run

    code = run()
    # The run is over: let the interpreter's exit skip collecting every object it made
    # (about 0.1 s with libcloud, requests and jsonschema loaded). atexit handlers, buffer
    # flushes and module clean-up still happen; only this process's own exit does this.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    main()
