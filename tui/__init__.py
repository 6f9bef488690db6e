"""Terminal UI for mptcp-analyze: a Wireshark-like MPTCP inspector built with textual.

``tui.app.run(path)`` opens it. The modules below the app import no textual:

* :mod:`tui.index`: the compact per-frame column index, filled from the capture reader's records
  (file offsets included) and the pipeline's segments;
* :mod:`tui.store`: packets read back by offset (``analyzer.ingest.capture.RecordFile``) and decoded
  on demand (LRU cached);
* :mod:`tui.session`: one trace: runs the analysis with the inspector's observers;
* :mod:`tui.filter`: the filter language; :mod:`tui.describe` / :mod:`tui.dissect`: the packet list's
  one-line summaries and the detail tree; :mod:`tui.collect`: plot series and the follow spool;
  :mod:`tui.flows`: the connections pane's model.

``tui.widgets`` and ``tui.screens`` hold the textual parts; ``inspector.tcss`` their looks.
"""
