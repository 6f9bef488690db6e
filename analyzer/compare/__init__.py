"""Two vantage points of the same traffic: match connections, subflows and packets, report what the network did.

Modules: ``match`` (connections and subflows), ``index`` (a second read keeping matched subflows' packets),
``packets`` (pairing, reordering), ``middlebox`` (effects), ``engine`` (clock offset, one-way delays, the
whole run), ``json_out`` (the ``mptcp-analyze-compare/1`` contract), ``text`` (rich report).
"""

from analyzer.compare.engine import compare, compare_analyses
from analyzer.compare.model import Comparison

__all__ = ["Comparison", "compare", "compare_analyses"]
