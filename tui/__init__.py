"""Terminal UI for mptcp-analyze (textual). Built in its own issue; thin over :mod:`analyzer.model`."""
