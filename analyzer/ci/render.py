"""Rich output of ``rules`` and ``check`` (readable at 80 columns, plain when piped)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from analyzer.ci.check import Status, TraceResult
from analyzer.ci.junit import finding_line
from analyzer.ci.rulebook import FAMILY_NAMES, rfc_link, rules_by_family
from analyzer.ci.xcheck import KNOWN_BUGS, Disagreement, XcheckReport
from analyzer.findings import Finding, Severity
from analyzer.rules import Rule, source_file

SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def rules_table(console: Console) -> None:
    table = Table(title="mptcp-analyze rules", title_justify="left", show_lines=False, expand=False)
    table.add_column("id", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("section", no_wrap=True)
    table.add_column("title")
    groups = rules_by_family()
    for number, (family, rules) in enumerate(groups):
        name = FAMILY_NAMES.get(family, family)
        table.add_row(Text(family, style="bold"), "", "", Text(name, style="bold underline"))
        for rule in rules:
            table.add_row(
                rule.id, Text(rule.severity.label, style=SEVERITY_STYLE[rule.severity]), rule.section, rule.title
            )
        if number < len(groups) - 1:
            table.add_section()
    console.print(table)
    total = sum(len(rules) for _, rules in groups)
    console.print(f"{total} rules in {len(groups)} families; `mptcp-analyze rules ID` explains one.", markup=False)


def explain_rule(console: Console, rule: Rule) -> None:
    console.print(Text.assemble((rule.id, "bold"), "  ", rule.title))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    grid.add_row("severity", Text(rule.severity.label, style=SEVERITY_STYLE[rule.severity]))
    link = rfc_link(rule.section)
    section = f"RFC 8684 {rule.section}" if rule.section != "-" else "not a protocol rule"
    grid.add_row("section", Text(section + (f"  {link}" if link else "")))
    grid.add_row("family", Text(f"{rule.family} ({FAMILY_NAMES.get(rule.family, rule.family)})"))
    where = source_file(rule.id)
    if where:
        grid.add_row("decided in", Text(where))
    console.print(grid)
    if rule.description:
        console.print()
        console.print(rule.description, markup=False)


_MARK = {Status.PASS: ("✓", "green"), Status.FAIL: ("✗", "bold red"), Status.ERROR: ("!", "bold magenta"),
         Status.INTERNAL: ("!", "bold magenta")}  # fmt: skip


def _finding(console: Console, finding: Finding) -> None:
    line = Text("    ")
    line.append(finding_line(finding), style=SEVERITY_STYLE[finding.severity])
    console.print(line)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def check_summary(console: Console, results: Sequence[TraceResult], fail_on: Severity, verbose: bool) -> None:
    for result in results:
        mark, style = _MARK[result.status]
        head = Text.assemble((mark, style), " ", (result.path, "bold"))
        if result.status is not Status.PASS:
            head.append(f"  {result.status.value.upper()}", style=style)
        if result.status in (Status.ERROR, Status.INTERNAL):
            head.append("  (the reason is on stderr)", style="dim")
            console.print(head)
            continue
        fb = f" ({result.fallbacks} fell back)" if result.fallbacks else ""
        counts = result.counts()
        tally = ", ".join(
            _plural(counts[sev], sev.label) if sev is not Severity.INFO else f"{counts[sev]} info"
            for sev in sorted(Severity, reverse=True) if counts[sev]
        ) or "no findings"  # fmt: skip
        not_up = result.subflows - result.established_subflows
        sfs = _plural(result.subflows, "subflow") + (f" ({not_up} not established)" if not_up else "")
        head.append(f"  {_plural(result.connections, 'connection')}{fb}, {sfs} · {tally}", style="dim")
        console.print(head)
        if verbose:  # what happened to each connection, in one sentence (the report has the timeline)
            for cid, verdict in result.diagnoses:
                console.print(Text.assemble("    ", (f"connection {cid}: ", "bold"), verdict))
        shown = result.findings if verbose else result.failing
        for finding in shown:
            _finding(console, finding)
        hidden = len(result.findings) - len(shown)
        if hidden and result.status is Status.FAIL:
            console.print(f"    ({hidden} below --fail-on {fail_on.label}; -v lists them)", style="dim", markup=False)
        for unmet in result.unmet:
            console.print(Text.assemble("    ", ("expectation ", "bold red"), (f"{unmet.key}: ", "bold"),
                                        unmet.message))  # fmt: skip
        if result.ignored:
            console.print(f"    ({_plural(len(result.ignored), 'finding')} ignored by expectations)", style="dim",
                          markup=False)  # fmt: skip
    statuses = [r.status for r in results]
    errors = statuses.count(Status.ERROR) + statuses.count(Status.INTERNAL)
    summary = (
        f"{len(results)} trace{'s' if len(results) != 1 else ''}: {statuses.count(Status.PASS)} passed, "
        f"{statuses.count(Status.FAIL)} failed, {errors} could not be checked (fail-on: {fail_on.label})"
    )
    console.print(escape(summary), style="bold")


def xcheck_report(console: Console, report: XcheckReport, show_known: bool) -> None:
    mode = "two-pass" if report.two_pass else "single pass"
    console.print(Text.assemble(("xcheck ", "bold"), (report.path, "bold"),
                                f" against Wireshark (tshark {report.tshark_version}, {mode})"))  # fmt: skip
    console.print(f"compared {report.frames:,} MPTCP frames, {report.options:,} options, {report.fields:,} fields",
                  markup=False)  # fmt: skip
    if report.unexplained_total:
        console.print(Text(f"{report.unexplained_total} unexplained disagreement(s):", style="bold red"))
        console.print(_disagreement_table(report.unexplained))
        if report.unexplained_total > len(report.unexplained):
            console.print(f"(first {len(report.unexplained)} shown; --json lists them too)", markup=False)
    else:
        console.print(Text("no unexplained disagreements", style="bold green"))
    if not report.known:
        return
    console.print()
    console.print(Text("Known Wireshark bugs (Wireshark is wrong, we are right):", style="bold"))
    for bug_id, items in report.known.items():
        bug = KNOWN_BUGS[bug_id]
        count = report.known_total[bug_id]
        frames = sorted({d.frame for d in items})
        listed = ", ".join(map(str, frames[:12])) + (", …" if len(frames) > 12 or count > len(items) else "")
        fields = ", ".join(sorted({d.field for d in items}))
        console.print(Text.assemble("  ", (bug_id, "yellow"), f"  {count}×  ", bug.title))
        console.print(f"    fields: {fields}; frames {listed}", markup=False, style="dim")
        console.print(f"    why: {bug.why}", markup=False)
        if show_known:
            console.print(_disagreement_table(items, indent=True))


def _disagreement_table(items: Sequence[Disagreement], indent: bool = False) -> Table:
    table = Table(show_edge=not indent, padding=(0, 1))
    table.add_column("frame", justify="right", no_wrap=True)
    table.add_column("field", no_wrap=True)
    table.add_column("ours")
    table.add_column("Wireshark")
    table.add_column("note")
    for d in items:
        table.add_row(str(d.frame), d.field, d.ours, d.wireshark, d.note)
    return table
