"""The one error the backtester shows a user: bad input or a bad setting, named, exit code 2."""

from __future__ import annotations


class BacktestInputError(Exception):
    """Input the backtest cannot use (empty range, missing partition, old schema, corrupt file,
    bad option). The message names the file or option; the CLI prints it on one line, exit 2."""
