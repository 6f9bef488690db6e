"""Moved: the lab is `mptcp-analyze lab` (analyzer/lab/). This shim keeps old recorded commands working."""
import sys

from analyzer.cli import main
from analyzer.lab.cli import legacy_args

if __name__ == "__main__":
    main(legacy_args(sys.argv[1:]))
