"""The command line's argument parser: a usage error is one line, as every other bad input is.

Used by `rrnn` (cli.py) and by `rrnn bench` (bench.py, which parses its own options), so both
answer a mistyped option with one line on stderr and exit code 2, not argparse's usage block.
"""

from __future__ import annotations

import argparse
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (`rrnn train: error: ...`), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
