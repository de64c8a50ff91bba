#!/usr/bin/env python3
"""Turn one bench/run.sh result folder into a dated section of BENCHMARKS.md.

    bench/report.py /var/tmp/muster-bench/runs/20261122T034106Z [--out BENCHMARKS.md]
    bench/report.py --latest            # the newest folder under $BENCH_DIR/runs

The new section goes on top; every older section and the history table's older rows are
kept, so regressions show. Re-running it on the same folder replaces that folder's own
section (matched by its stamp) instead of adding a second one.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TOOL_ORDER = [
    "muster", "muster-prev", "muster-batch50", "muster-wave50", "pdsh", "pdsh-fN", "pssh", "clush", "ansible-raw", "ansible-command",
    "ssh-loop", "ssh-mux-loop", "ssh-mux-xargs", "floor",
]
TOOL_LABEL = {
    "muster": "muster `ctl run`",
    "muster-prev": "muster `ctl run`, previous build (MUSTER_PREV_BIN)",
    "muster-batch50": "muster `ctl run --batch 50` (all N hosts, 50 at a time)",
    "muster-wave50": "muster `ctl run` on 50 of the N hosts (one wave)",
    "pdsh": "pdsh -R ssh (default fanout 32)",
    "pdsh-fN": "pdsh -R ssh -f N",
    "pssh": "parallel-ssh -p N",
    "clush": "clush -f N -b",
    "ansible-raw": "ansible -m raw -f N",
    "ansible-command": "ansible -m command -f N",
    "ssh-loop": "ssh loop (sequential)",
    "ssh-mux-loop": "ssh loop, warm ControlPersist masters",
    "ssh-mux-xargs": "ssh via warm masters, xargs -P N",
    "floor": "floor: local fork+exec, xargs -P N",
}
CMD_LABEL = {"true": "`true`", "uname": "`uname -n`"}

HEADER = """# Benchmarks

How muster's `ctl run` compares with the fan-out tools an operator would pick instead,
measured in the same run on the same machine. Produced by `bench/run.sh` +
`bench/report.py` (see [bench/README.md](bench/README.md)); issue 5 has the plan and
the targets. Every fake host is on this machine's loopback: one sshd and one `agent` per
host on 127.0.X.Y, so "network" costs here are loopback costs and both sides' CPU comes
out of the same cores.

Newest run first; older runs are kept below it, unchanged, and in the history table.

Push/pull rows (item 3 of issue 5: `ctl push` vs pdcp, parallel-scp, `clush --copy`, scp
loops and `ansible -m copy`, against the raw TCP / ssh stream / sha256 / cp ceilings; `ctl
pull` vs rpdcp, pslurp, `clush --rcopy`, scp loops) are in the runs from 2026-11-22 04:28
UTC on; the runs before have `ctl run` rows only (and a run may have only one kind: each
section says what it measured).
"""

PHIST_START = "<!-- push-history-start -->"
PHIST_END = "<!-- push-history-end -->"
PHIST_HEAD = (
    "| run (UTC) | muster build | push 1 GiB → 1 host: muster | best ssh stream | raw TCP "
    "| push 100 MiB → 10 hosts: muster | pdcp | pdcp/muster | push 1 GiB → 10: muster "
    "| pdcp | pull 1 GiB ← 10: muster | rpdcp | ctl RSS (1 GiB) | agent RSS (1 GiB) |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)
PUSH_TOOL_ORDER = [
    "muster", "muster-prev", "pdcp", "pscp", "clush", "scp-loop", "scp-xargs", "ansible-copy",
    "tcp", "ssh-stream-gcm", "ssh-stream", "cp-sync", "openssl-sha256", "sha256sum",
]
PUSH_LABEL = {
    "muster": "muster `ctl push`",
    "muster-prev": "muster `ctl push`, previous build (MUSTER_PREV_BIN)",
    "pdcp": "pdcp -R ssh",
    "pscp": "parallel-scp -p N",
    "clush": "clush -f N --copy --dest",
    "scp-loop": "scp loop (sequential)",
    "scp-xargs": "scp via xargs -P N",
    "ansible-copy": "ansible -m copy -f N",
    "tcp": "ceiling: one raw TCP stream on loopback (python, 256 KiB read+send)",
    "ssh-stream-gcm": "ceiling: ssh -c aes128-gcm 'cat >/dev/null'",
    "ssh-stream": "ceiling: ssh (default cipher) 'cat >/dev/null'",
    "cp-sync": "ceiling: cp + fsync on the same disk (N copies at once)",
    "openssl-sha256": "ceiling: openssl dgst -sha256",
    "sha256sum": "ceiling: sha256sum",
}
PULL_TOOL_ORDER = ["muster", "muster-prev", "rpdcp", "pslurp", "clush", "scp-loop", "scp-xargs"]
PULL_LABEL = {
    "muster": "muster `ctl pull`",
    "muster-prev": "muster `ctl pull`, previous build (MUSTER_PREV_BIN)",
    "rpdcp": "rpdcp -R ssh",
    "pslurp": "parallel-slurp -p N",
    "clush": "clush -f N --rcopy --dest",
    "scp-loop": "scp loop (sequential)",
    "scp-xargs": "scp via xargs -P N",
}
CEILINGS = {"tcp", "ssh-stream-gcm", "ssh-stream", "cp-sync", "openssl-sha256", "sha256sum"}

HIST_START = "<!-- history-start -->"
HIST_END = "<!-- history-end -->"
HIST_HEAD = (
    "| run (UTC) | muster build | N=200 `true`: muster | floor | pdsh | warm-mux loop "
    "| muster/floor | pdsh/muster | ctl RSS @200 | ctl CPU/host @200 | ctl RSS @1000 "
    "| ctl CPU/host @1000 | load1 (median) |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def fnum(x: str) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if v != v else v


def read_meta(run: Path) -> dict[str, str]:
    meta: dict[str, str] = {}
    for line in (run / "meta.txt").read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            meta[k] = v
    return meta


class Cell:
    """The valid timed samples of one (N, command, tool)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, str]] = []
        self.invalid: list[dict[str, str]] = []
        self.warmup_ok = None
        self.warmup_verified = False

    def col(self, name: str) -> list[float]:
        return [v for v in (fnum(r[name]) for r in self.rows) if v is not None]

    def med(self, name: str) -> float | None:
        xs = self.col(name)
        return statistics.median(xs) if xs else None

    @property
    def n(self) -> int:
        return len(self.rows)


def load(run: Path, merge: list[Path] = ()) -> dict[tuple[int, str, str], Cell]:
    cells: dict[tuple[int, str, str], Cell] = defaultdict(Cell)
    for d in [run, *merge]:
        load_into(cells, d)
    return cells


def load_into(cells, run: Path) -> None:
    with open(run / "results.tsv", newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            key = (int(r["n"]), r["cmd"], r["tool"])
            c = cells[key]
            if r["warmup"] == "1":
                c.warmup_ok = r["valid"] == "1"
                c.warmup_verified = r["valid"] == "1" and r.get("verified") == "1"
                continue
            (c.rows if r["valid"] == "1" else c.invalid).append(r)


def s(x: float | None, unit: str = "s") -> str:
    if x is None:
        return "–"
    if unit == "s":
        if x < 1:
            return f"{x * 1000:.0f} ms" if x >= 0.0995 else f"{x * 1000:.1f} ms"
        return f"{x:.2f} s"
    if unit == "ms":
        if x < 1:
            return f"{x:.3f} ms"
        return f"{x:.2f} ms" if x < 10 else f"{x:.0f} ms"
    if unit == "MiB":
        return f"{x:.1f} MiB"
    return f"{x:.3g}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "–"
    r = a / b
    return f"{r:.3f}" if r < 0.1 else f"{r:.2f}"


def times(a: float | None, b: float | None) -> str:
    """b / a as 'N×' (how many times faster a is than b)."""
    if a is None or b is None or a == 0:
        return "–"
    r = b / a
    return f"{r:.0f}×" if r >= 10 else f"{r:.1f}×"


def table(cells, n: int, cmd: str) -> str:
    mus = cells.get((n, cmd, "muster"))
    mus_wall = mus.med("wall_s") if mus else None
    out = [
        "| tool | samples | wall median | wall min–max | muster ÷ tool | tool ÷ muster "
        "| controller CPU | CPU/host (controller) | peak RSS | host-side CPU/host "
        "| machine CPU/host | others' CPU meanwhile |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for tool in TOOL_ORDER:
        c = cells.get((n, cmd, tool))
        if c is None:
            continue
        if c.n == 0:
            why = c.invalid[0]["reason"] if c.invalid else "no timed sample"
            out.append(f"| {TOOL_LABEL[tool]} | 0 ({len(c.invalid)} invalid: {why}) "
                       "| – | – | – | – | – | – | – | – | – | – |")
            continue
        wall = c.col("wall_s")
        cc = c.med("client_cpu_s")
        hc = c.med("host_cpu_s")
        rss = c.med("maxrss_kb")
        other = c.med("other_cpu_s")
        samples = f"{c.n}" + (f" (+{len(c.invalid)} invalid)" if c.invalid else "")
        out.append(
            f"| {TOOL_LABEL[tool]} | {samples} | {s(statistics.median(wall))} "
            f"| {s(min(wall))} – {s(max(wall))} "
            f"| {'1' if tool == 'muster' else ratio(mus_wall, statistics.median(wall))} "
            f"| {'1' if tool == 'muster' else times(mus_wall, statistics.median(wall))} "
            f"| {s(cc)} | {s(cc * 1000 / n if cc is not None else None, 'ms')} "
            f"| {s(rss / 1024 if rss else None, 'MiB')} "
            f"| {s(hc * 1000 / n if hc is not None else None, 'ms')} "
            f"| {s((cc + hc) * 1000 / n if cc is not None and hc is not None else None, 'ms')} "
            f"| {s(other)} |"
        )
    return "\n".join(out)


def scale_table(cells, ns: list[int]) -> str:
    out = [
        "| N | command | samples | wall median | wall min–max | ctl CPU | ctl CPU/host "
        "| ctl peak RSS | agents' CPU/host (incl. the commands) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in ns:
        for cmd in ("true", "uname"):
            c = cells.get((n, cmd, "muster"))
            if c is None or c.n == 0:
                if c is not None:
                    why = c.invalid[0]["reason"] if c.invalid else "no timed sample"
                    out.append(f"| {n} | {CMD_LABEL[cmd]} | 0 ({why}) | – | – | – | – | – | – |")
                continue
            wall = c.col("wall_s")
            cc = c.med("client_cpu_s")
            hc = c.med("host_cpu_s")
            rss = c.med("maxrss_kb")
            out.append(
                f"| {n} | {CMD_LABEL[cmd]} | {c.n} | {s(statistics.median(wall))} "
                f"| {s(min(wall))} – {s(max(wall))} | {s(cc)} | {s(cc * 1000 / n, 'ms')} "
                f"| {s(rss / 1024, 'MiB')} | {s(hc * 1000 / n, 'ms')} |"
            )
    return "\n".join(out)


def verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("**met**" if ok else "**missed**")


def targets(cells, meta) -> tuple[str, dict]:
    def med(n, cmd, tool, col="wall_s"):
        c = cells.get((n, cmd, tool))
        return c.med(col) if c and c.n else None

    m200 = med(200, "true", "muster")
    floor = med(200, "true", "floor")
    pdsh = med(200, "true", "pdsh")
    pdshf = med(200, "true", "pdsh-fN")
    muxl = med(200, "true", "ssh-mux-loop")
    muxx = med(200, "true", "ssh-mux-xargs")
    rows = ["| target (issue 5) | measured | verdict |", "|---|---|---|"]

    def add(name, measured, ok):
        rows.append(f"| {name} | {measured} | {verdict(ok)} |")

    add("`ctl run -g all true` at 200 hosts within 1.5× of the local fork+exec floor",
        f"muster {s(m200)}, floor {s(floor)}: {ratio(m200, floor)}×",
        None if m200 is None or floor is None else m200 <= 1.5 * floor)
    add("… and at least 30× faster than pdsh",
        f"pdsh {s(pdsh)} = {times(m200, pdsh)} muster; pdsh -f 200 {s(pdshf)} = {times(m200, pdshf)}",
        None if m200 is None or pdsh is None else pdsh / m200 >= 30
        and (pdshf is None or pdshf / m200 >= 30))
    add("… faster than the warm-mux ssh loop",
        f"warm-mux loop {s(muxl)} = {times(m200, muxl)} muster; warm masters with xargs -P 200 "
        f"{s(muxx)} = {times(m200, muxx)}",
        None if m200 is None or muxl is None else m200 < muxl and (muxx is None or m200 < muxx))
    rss200 = med(200, "true", "muster", "maxrss_kb")
    add("`ctl` peak RSS ≤ 20 MiB at 200 hosts",
        s(rss200 / 1024 if rss200 else None, "MiB"),
        None if rss200 is None else rss200 / 1024 <= 20)
    rss5k = med(5000, "true", "muster", "maxrss_kb")
    rss1k = med(1000, "true", "muster", "maxrss_kb")
    if rss5k is not None:
        add("`ctl` peak RSS ≤ 100 MiB at 5,000 hosts", s(rss5k / 1024, "MiB"), rss5k / 1024 <= 100)
    else:
        add("`ctl` peak RSS ≤ 100 MiB at 5,000 hosts",
            f"not measured at 5,000 this run (see notes); at 1,000: {s(rss1k / 1024 if rss1k else None, 'MiB')}",
            None)
    worst = None
    parts = []
    for n in sorted({k[0] for k in cells}):
        c = cells.get((n, "true", "muster"))
        if c and c.n and n >= 200:
            per = c.med("client_cpu_s") * 1000 / n
            parts.append(f"{per:.3f} ms at {n}")
            worst = per if worst is None else max(worst, per)
    add("controller CPU per host ≤ 0.2 ms (`true`, N ≥ 200)", ", ".join(parts) or "–",
        None if worst is None else worst <= 0.2)
    add("push/pull targets", "see the push/pull targets table (when the run has push rows)", None)
    hist = {
        "m200": m200, "floor": floor, "pdsh": pdsh, "muxl": muxl, "rss200": rss200,
        "cpu200": (med(200, "true", "muster", "client_cpu_s") or 0) * 1000 / 200
        if m200 is not None else None,
        "rss1k": rss1k,
        "cpu1k": (med(1000, "true", "muster", "client_cpu_s") or 0) * 1000 / 1000
        if rss1k is not None else None,
    }
    return "\n".join(rows), hist


def is_xfer(cmd: str) -> bool:
    return cmd.startswith("push") or cmd.startswith("pull")


def mib_of(cmd: str) -> int:
    return int(cmd[4:])


def size_label(mib: int) -> str:
    return f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"


def rate(mib: float, n: int, wall: float | None, tool: str = "") -> float | None:
    """MiB/s moved: the file times the hosts it reached (hashing ceilings: once)."""
    if wall is None or wall <= 0:
        return None
    return mib * n / wall


def fr(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f} MiB/s"


def xfer_table(cells, kind: str, n: int, mib: int) -> str:
    cmd = f"{kind}{mib}"
    order = PUSH_TOOL_ORDER if kind == "push" else PULL_TOOL_ORDER
    label = PUSH_LABEL if kind == "push" else PULL_LABEL
    mus = cells.get((n, cmd, "muster"))
    mw = mus.med("wall_s") if mus and mus.n else None
    out = [
        "| tool | samples (sha256 / digest-checked) | wall median | wall min–max | MiB/s (median) "
        "| muster ÷ tool | tool ÷ muster | controller CPU | peak RSS (controller) "
        "| agent peak RSS | host-side CPU | sync after (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for tool in order:
        c = cells.get((n, cmd, tool))
        if c is None:
            continue
        if c.n == 0:
            why = c.invalid[0]["reason"] if c.invalid else "no timed sample"
            out.append(f"| {label[tool]} | 0 ({len(c.invalid)} invalid: {why}) "
                       "| – | – | – | – | – | – | – | – | – | – |")
            continue
        wall = c.col("wall_s")
        w = statistics.median(wall)
        ver = sum(1 for r in c.rows if r.get("verified") == "1") + (1 if c.warmup_verified else 0)
        if tool.startswith("ssh-stream"):
            samples = f"{c.n} (nothing kept to check)"
        else:
            samples = f"{c.n} ({ver} checked, warm-up included)"
        samples += f" +{len(c.invalid)} invalid" if c.invalid else ""
        hwm = c.med("agent_hwm_kb") if tool in ("muster", "muster-prev") else None
        cc = c.med("client_cpu_s")
        hc = c.med("host_cpu_s")
        rss = c.med("maxrss_kb")
        ps = c.med("post_sync_s")
        out.append(
            f"| {label[tool]} | {samples} | {s(w)} | {s(min(wall))} – {s(max(wall))} "
            f"| {fr(rate(mib, 1 if tool.endswith('sha256') or tool == 'sha256sum' else n, w))} "
            f"| {'1' if tool == 'muster' else ratio(mw, w)} "
            f"| {'1' if tool == 'muster' else times(mw, w)} "
            f"| {s(cc)} | {s(rss / 1024 if rss else None, 'MiB')} "
            f"| {s(hwm / 1024 if hwm else None, 'MiB')} | {s(hc)} | {s(ps)} |"
        )
    return "\n".join(out)


def prev_table(cells) -> str:
    """muster against muster-prev (another build, MUSTER_PREV_BIN), every row both have."""
    keys = sorted({(n, cmd) for (n, cmd, t) in cells if t == "muster-prev"}
                  & {(n, cmd) for (n, cmd, t) in cells if t == "muster"},
                  key=lambda k: (is_xfer(k[1]), k[1][:4] != "push", k[1], k[0]))
    if not keys:
        return ""
    out = [
        "| row | samples (this / prev) | muster: wall median (min–max) "
        "| muster-prev: wall median (min–max) | wall: muster ÷ muster-prev | ranges overlap "
        "| controller CPU: muster / prev (ratio) | host-side CPU: muster / prev (ratio) "
        "| peak RSS: muster / prev |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, cmd in keys:
        a, b = cells[(n, cmd, "muster")], cells[(n, cmd, "muster-prev")]
        if is_xfer(cmd):
            kind, mib = cmd[:4], mib_of(cmd)
            name = f"{kind} {size_label(mib)} {'→' if kind == 'push' else '←'} {n} host{'s' if n > 1 else ''}"
        else:
            name = f"{CMD_LABEL.get(cmd, cmd)}, {n} hosts"
        if a.n == 0 or b.n == 0:
            out.append(f"| {name} | {a.n} / {b.n} | – | – | – | – | – | – | – |")
            continue
        wa, wb = a.col("wall_s"), b.col("wall_s")
        ma, mb = statistics.median(wa), statistics.median(wb)
        ca, cb = a.med("client_cpu_s"), b.med("client_cpu_s")
        ha, hb = a.med("host_cpu_s"), b.med("host_cpu_s")
        ra, rb = a.med("maxrss_kb"), b.med("maxrss_kb")
        overlap = "yes" if min(wa) <= max(wb) and min(wb) <= max(wa) else "**no**"
        out.append(
            f"| {name} | {a.n} / {b.n} | {s(ma)} ({s(min(wa))} – {s(max(wa))}) "
            f"| {s(mb)} ({s(min(wb))} – {s(max(wb))}) | {ratio(ma, mb)} | {overlap} "
            f"| {s(ca)} / {s(cb)} ({ratio(ca, cb)}) | {s(ha)} / {s(hb)} ({ratio(ha, hb)}) "
            f"| {s(ra / 1024 if ra else None, 'MiB')} / {s(rb / 1024 if rb else None, 'MiB')} |")
    return "\n".join(out)


def xfer_sections(cells) -> tuple[list[str], dict]:
    keys = sorted({(k[1], k[0]) for k in cells if is_xfer(k[1])},
                  key=lambda x: (x[0][:4] != "push", mib_of(x[0]), x[1]))
    L: list[str] = []
    if not keys:
        return L, {}

    def med(n, cmd, tool, col="wall_s"):
        c = cells.get((n, cmd, tool))
        return c.med(col) if c and c.n else None

    for cmd, n in keys:
        kind, mib = cmd[:4], mib_of(cmd)
        arrow = "→" if kind == "push" else "←"
        L.append(f"### {kind} {size_label(mib)} {arrow} {n} host{'s' if n > 1 else ''}")
        L.append("")
        L.append(xfer_table(cells, kind, n, mib))
        L.append("")
    # memory: flat in file size?
    sizes = sorted({mib_of(k[1]) for k in cells if is_xfer(k[1])})
    ns = sorted({k[0] for k in cells if is_xfer(k[1])})
    L.append("### muster memory against file size (medians of peak RSS)")
    L.append("")
    hdr = "| | " + " | ".join(f"{size_label(m)}" for m in sizes) + " |"
    L.append(hdr)
    L.append("|---|" + "---|" * len(sizes))
    for kind in ("push", "pull"):
        for n in ns:
            for what, col in (("ctl", "maxrss_kb"), ("agent (largest of the N)", "agent_hwm_kb")):
                vals = [med(n, f"{kind}{m}", "muster", col) for m in sizes]
                if all(v is None for v in vals):
                    continue
                L.append(f"| {kind}, {n} host{'s' if n > 1 else ''}: {what} | "
                         + " | ".join(s(v / 1024 if v else None, "MiB") for v in vals) + " |")
    L.append("")

    # targets
    rows = ["| push target (issue 5) | measured | verdict |", "|---|---|---|"]
    hist = {}
    for mib in sizes:
        cmd = f"push{mib}"
        m1 = med(1, cmd, "muster")
        streams = [(t, med(1, cmd, t)) for t in ("ssh-stream-gcm", "ssh-stream")]
        streams = [(t, w) for t, w in streams if w]
        if m1 is not None and streams:
            bt, bw = min(streams, key=lambda x: x[1])
            rows.append(
                f"| one host at least as fast as the best ssh stream ({size_label(mib)}) "
                f"| muster {fr(rate(mib, 1, m1))} ({s(m1)}), best ssh stream "
                f"{fr(rate(mib, 1, bw))} ({PUSH_LABEL[bt].split(': ')[1]}); raw TCP "
                f"{fr(rate(mib, 1, med(1, cmd, 'tcp')))}, openssl sha256 "
                f"{fr(rate(mib, 1, med(1, cmd, 'openssl-sha256')))}, cp+fsync "
                f"{fr(rate(mib, 1, med(1, cmd, 'cp-sync')))} | {verdict(m1 <= bw)} |")
        nmax = max(ns)
        mN = med(nmax, cmd, "muster")
        pd = med(nmax, cmd, "pdcp")
        if mN is not None and pd is not None and nmax > 1:
            rows.append(
                f"| {nmax} hosts at least 2× faster than pdcp ({size_label(mib)}) "
                f"| muster {s(mN)} ({fr(rate(mib, nmax, mN))}), pdcp {s(pd)}: "
                f"{times(mN, pd)} | {verdict(pd / mN >= 2)} |")
        hist[mib] = (m1, streams, mN, pd)
    # memory flat
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        parts, ok = [], True
        for kind in ("push", "pull"):
            for n in ns:
                for what, col in (("ctl", "maxrss_kb"), ("agent", "agent_hwm_kb")):
                    a, b = med(n, f"{kind}{lo}", "muster", col), med(n, f"{kind}{hi}", "muster", col)
                    if a and b:
                        parts.append(f"{kind} {n}: {what} {a / 1024:.1f} → {b / 1024:.1f} MiB")
                        # flat: the 10× larger file costs at most 25% or 4 MiB more
                        ok = ok and (b <= a * 1.25 or b - a <= 4096)
        rows.append(f"| memory flat in file size ({size_label(lo)} → {size_label(hi)}; flat = "
                    f"at most +25% or +4 MiB) | {'; '.join(parts)} | {verdict(ok if parts else None)} |")
    L.append("### Push/pull targets (issue 5)")
    L.append("")
    L.extend(rows)
    L.append("")
    big = sizes[-1]
    h = {
        "p1": rate(big, 1, med(1, f"push{big}", "muster")),
        "ssh": max([rate(big, 1, med(1, f"push{big}", t)) or 0 for t in ("ssh-stream-gcm", "ssh-stream")] or [0]) or None,
        "tcp": rate(big, 1, med(1, f"push{big}", "tcp")),
        "m10s": med(max(ns), f"push{sizes[0]}", "muster"),
        "pd10s": med(max(ns), f"push{sizes[0]}", "pdcp"),
        "m10b": med(max(ns), f"push{big}", "muster"),
        "pd10b": med(max(ns), f"push{big}", "pdcp"),
        "l10b": med(max(ns), f"pull{big}", "muster"),
        "r10b": med(max(ns), f"pull{big}", "rpdcp"),
        "ctlrss": med(max(ns), f"push{big}", "muster", "maxrss_kb"),
        "agrss": med(max(ns), f"push{big}", "muster", "agent_hwm_kb"),
        "small": sizes[0], "big": big,
    }
    return L, h


def section(run: Path, merge: list[Path] = ()) -> tuple[str, str]:
    meta = read_meta(run)
    cells = load(run, merge)
    notes: list[str] = []
    cmdlines: list[str] = []
    for d in [run, *merge]:
        if (d / "notes.txt").exists():
            notes += [l for l in (d / "notes.txt").read_text().splitlines() if l.strip()]
        if (d / "cmdlines.txt").exists():
            cmdlines += [l for l in (d / "cmdlines.txt").read_text().splitlines()
                         if l not in cmdlines]
    for d in merge:
        m2 = read_meta(d)
        for k, v in m2.items():
            if k.startswith("agents_"):
                meta[k] = v
        notes.append(f"rows from a second run folded in: `{m2.get('stamp')}` "
                     f"({m2.get('date')}, load {m2.get('load_start')} → {m2.get('load_end')}; "
                     + (f"phases {m2.get('PHASES')}, sizes {m2.get('PUSH_SIZES')} MiB, "
                        f"N = {m2.get('PUSH_NS')})" if m2.get('PUSH_NS') else
                        f"N = {m2.get('SCALE_NS') or m2.get('NS')})"))
    peer_ns = sorted({n for (n, c, t) in cells if t != "muster" and not is_xfer(c)})
    scale_ns = sorted({n for (n, c, t) in cells
                       if t == "muster" and n not in peer_ns and not is_xfer(c)})
    has_run_rows = any(not is_xfer(c) for (_, c, _) in cells)
    loads = [fnum(r["load1"]) for c in cells.values() for r in c.rows]
    loads = [x for x in loads if x is not None]
    others = [fnum(r["other_cpu_s"]) / max(fnum(r["wall_s"]) or 1e-9, 1e-9)
              for c in cells.values() for r in c.rows
              if fnum(r["other_cpu_s"]) is not None and fnum(r["wall_s"])]

    tgt, hist = targets(cells, meta)
    L: list[str] = []
    L.append(f"## Run {meta.get('date', '?')} (`{meta.get('stamp', run.name)}`)")
    L.append("")
    L.append(f"<!-- run {meta.get('stamp', run.name)} -->")
    L.append("")
    L.append("### Machine and versions")
    L.append("")
    L.append(f"- machine: {meta.get('nproc')} cores, {meta.get('cpu')} (SHA extensions: "
             f"{meta.get('cpu_flags_sha')}), {meta.get('mem')} RAM, {meta.get('kernel')}, "
             f"{meta.get('os')}")
    L.append(f"- **shared machine**: other engineers were building and testing on the same 2 "
             f"cores during the run. Load average at start {meta.get('load_start')}, at end "
             f"{meta.get('load_end', '–')}; median 1-min load at the samples "
             f"{statistics.median(loads) if loads else float('nan'):.2f} (the load counts the "
             f"benchmark's own processes too, e.g. a thousand agents' commands at once, so it "
             f"overstates the noise); CPU used by everything else on the machine during a "
             f"sample (median, in cores): "
             f"{statistics.median(others) if others else float('nan'):.2f}. Wall times carry "
             "that noise; CPU figures (cgroup-accounted) much less so.")
    L.append(f"- muster: {meta.get('muster')}, built with {meta.get('rustc')} (release)")
    if meta.get("muster_prev"):
        L.append(f"- muster-prev (the rows `muster-prev`: a second build, its own agents on the "
                 f"same fake hosts at port {meta.get('PREV_PORT')}): {meta.get('muster_prev')}")
    for k in ("openssh", "pdsh", "pssh", "clush", "ansible", "xargs"):
        L.append(f"- {k}: {meta.get(k)}")
    L.append(f"- run: R = {meta.get('R')} timed rounds per row after one warm-up round, tools "
             f"alternating (the starting tool rotates each round); ansible at N ≥ "
             f"{meta.get('ANSIBLE_LARGE_N')}: {meta.get('R_ANSIBLE_LARGE')} rounds, commands "
             f"`{meta.get('ANSIBLE_LARGE_CMDS')}`, ansible time budget "
             f"{meta.get('ANSIBLE_BUDGET')} s; plain ssh loop up to N = "
             f"{meta.get('SSH_LOOP_MAX_N')}; whole run {meta.get('elapsed_s', '–')} s")
    L.append(f"- environment of every sample: `{meta.get('env')}`")
    xL, phist = xfer_sections(cells)
    if xL:
        L.append(f"- push/pull: files of {meta.get('PUSH_SIZES')} MiB (random content, generated "
                 f"once, on the same disk as every destination: {meta.get('disk')}), to/from "
                 f"N = {meta.get('PUSH_NS')} hosts; R = {meta.get('R')} timed rounds below "
                 f"{meta.get('BIG_MIB')} MiB, {meta.get('R_BIG')} from there, after one warm-up "
                 f"round; every destination sha256-checked in rounds {meta.get('VERIFY_ROUNDS')} "
                 f"(0 = warm-up) and its size in every round; {meta.get('openssl_version')}; "
                 f"{meta.get('sha256sum')}")
    L.append("")
    L.append("How to read the tables: *wall* is the whole command, start to exit. *Controller "
             "CPU* is user+sys of the controller's whole process tree (ctl alone; pdsh and its "
             "ssh clients; ansible and its forks; for the warm-mux rows, the ssh masters too), "
             "from a cpuacct cgroup. *Peak RSS* is GNU time's %M: the largest single process of "
             "that tree (for ansible, one fork, not the sum). *Host-side CPU* is sshd or agent "
             "plus the command they ran, from the fake hosts' cgroup. *Machine CPU/host* is "
             "controller + host side, per host. *Others' CPU* is what the rest of the machine "
             "(other engineers' jobs, and kernel threads) used during the sample: it grows when a "
             "tool leaves cores idle (a single-threaded Python controller, say), because "
             "the other jobs take them. A sample counts only when every "
             "host answered (exit status, the tool's per-host success lines, and for "
             "`uname -n` one output line per host).")
    L.append("")
    ptab = prev_table(cells)
    if ptab:
        L.append("### muster against the previous build (muster-prev)")
        L.append("")
        L.append("Both builds in the same run, alternating round by round with the other rows; "
                 "ratio of medians (below 1: this build is faster). *Ranges overlap* says whether "
                 "the two builds' min–max wall ranges meet: a rough noise check, not a test.")
        L.append("")
        L.append(ptab)
        L.append("")
    if not has_run_rows:
        L.append("*This run measured push and pull only* (`PHASES=\"push pull\"`): for the "
                 "`ctl run` rows see the older sections below.")
        L.append("")
    for n in peer_ns:
        for cmd in ("true", "uname"):
            if not any((n, cmd, t) in cells for t in TOOL_ORDER):
                continue
            L.append(f"### {CMD_LABEL[cmd]} on {n} hosts")
            L.append("")
            L.append(table(cells, n, cmd))
            L.append("")
    if scale_ns or any((n, "true", "muster") in cells for n in peer_ns):
        L.append("### muster alone at scale (one agent process per host)")
        L.append("")
        L.append(scale_table(cells, sorted(set(peer_ns) | set(scale_ns))))
        L.append("")
        rss_lines = []
        for k, v in meta.items():
            if k.startswith("agents_rss_kb_at_"):
                n_at = k[len("agents_rss_kb_at_"):]
                pss = meta.get(f"agents_pss_kb_at_{n_at}")
                rss_lines.append(f"with {n_at} agents: RSS {int(v) / 1024:.1f} MiB"
                                 + (f", Pss {int(pss) / 1024:.2f} MiB" if pss else ""))
        if rss_lines:
            L.append("Idle agent memory (mean per agent; RSS counts the shared binary, Pss "
                     "shares it out): " + "; ".join(rss_lines) + ".")
            L.append("")
    if has_run_rows:
        L.append("### Targets (issue 5)")
        L.append("")
        L.append(tgt)
        L.append("")
    if xL:
        L.append("How to read the push/pull tables: *wall* is the whole command, start to exit "
                 "(`ctl push` includes hashing the file; muster's agent fsyncs each file before "
                 "its rename, the ssh tools do not). Before every sample the destinations are "
                 "deleted and the disk synced (untimed), so every sample really transfers (every "
                 "muster sample must say `ok`, never `unchanged`); *sync after* is how long a "
                 "`sync` right after the sample took, i.e. the writing the tool left to the "
                 "kernel. *MiB/s* is file size × hosts ÷ wall (hash ceilings: file size ÷ wall). "
                 "*Agent peak RSS* is the largest VmHWM among the N agents during the sample "
                 "(reset before it with clear_refs). Pull sources are hard links of the one "
                 "generated file in each host's folder (so they read from one page-cache copy), "
                 "pull destinations are N separate files. Each fake host's sshd runs in its own "
                 "mount namespace where the host's folder is the bench user's home, so the ssh "
                 "tools write N distinct files too.")
        L.append("")
        L.extend(xL)
    if notes:
        L.append("### Notes from the run")
        L.append("")
        for nline in notes:
            L.append(f"- {nline}")
        L.append("")
    extra = run / "analysis.md"
    if extra.exists():
        L.append(extra.read_text().rstrip())
        L.append("")
    L.append("<details><summary>Exact command lines (`ctl run` rows shown for <code>true</code>; "
             "<code>uname -n</code> is the same with that command; push/pull rows as run)"
             "</summary>")
    L.append("")
    L.append("```sh")
    L.extend(cmdlines)
    L.append("```")
    L.append("")
    L.append("ssh client config (`-F`) used by every ssh-based row:")
    L.append("")
    L.append("```")
    if (run / "ssh_config").exists():
        L.append((run / "ssh_config").read_text().rstrip())
    L.append("```")
    L.append("")
    L.append("</details>")
    L.append("")

    def h(x, unit="s"):
        return s(x, unit) if x is not None else "–"

    hrow = (f"| {meta.get('date')} | {meta.get('muster', '?').split(' (')[0][:60]} "
            f"| {h(hist['m200'])} | {h(hist['floor'])} | {h(hist['pdsh'])} | {h(hist['muxl'])} "
            f"| {ratio(hist['m200'], hist['floor'])} | {times(hist['m200'], hist['pdsh'])} "
            f"| {h(hist['rss200'] / 1024 if hist['rss200'] else None, 'MiB')} "
            f"| {h(hist['cpu200'], 'ms')} "
            f"| {h(hist['rss1k'] / 1024 if hist['rss1k'] else None, 'MiB')} "
            f"| {h(hist['cpu1k'], 'ms')} "
            f"| {statistics.median(loads) if loads else float('nan'):.2f} |")
    prow = None
    if phist:
        def r_(x):
            return "–" if x is None else f"{x:,.0f} MiB/s"
        prow = (f"| {meta.get('date')} | {meta.get('muster', '?').split(' (')[0][:60]} "
                f"| {r_(phist['p1'])} | {r_(phist['ssh'])} | {r_(phist['tcp'])} "
                f"| {h(phist['m10s'])} | {h(phist['pd10s'])} | {times(phist['m10s'], phist['pd10s'])} "
                f"| {h(phist['m10b'])} | {h(phist['pd10b'])} | {h(phist['l10b'])} | {h(phist['r10b'])} "
                f"| {h(phist['ctlrss'] / 1024 if phist['ctlrss'] else None, 'MiB')} "
                f"| {h(phist['agrss'] / 1024 if phist['agrss'] else None, 'MiB')} |"
                f" <!-- {meta.get('stamp')} -->")
    hrow_out = f"{hrow} <!-- {meta.get('stamp')} -->" if has_run_rows else None
    return "\n".join(L), hrow_out, prow


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?")
    ap.add_argument("--latest", action="store_true")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--merge", action="append", default=[], metavar="RUN",
                    help="fold this run folder's samples into the section (e.g. a later "
                         "muster-only run at N=5000); repeatable")
    a = ap.parse_args()
    if a.latest:
        runs = sorted((Path(os.environ.get("BENCH_DIR", "/var/tmp/muster-bench")) / "runs").iterdir())
        run = runs[-1]
    elif a.run:
        run = Path(a.run)
    else:
        ap.error("give a run folder or --latest")
    sec, hrow, prow = section(run, [Path(m) for m in a.merge])
    stamp = read_meta(run).get("stamp", run.name)

    out = Path(a.out)
    old_rows: list[str] = []
    old_prows: list[str] = []
    old_sections: list[str] = []
    if out.exists():
        text = out.read_text()
        m = re.search(re.escape(HIST_START) + r"\n(.*?)" + re.escape(HIST_END), text, re.S)
        if m:
            old_rows = [l for l in m.group(1).splitlines()
                        if l.startswith("| ") and not l.startswith("| run (UTC)")
                        and f"<!-- {stamp} -->" not in l]
        m = re.search(re.escape(PHIST_START) + r"\n(.*?)" + re.escape(PHIST_END), text, re.S)
        if m:
            old_prows = [l for l in m.group(1).splitlines()
                         if l.startswith("| ") and not l.startswith("| run (UTC)")
                         and f"<!-- {stamp} -->" not in l]
        parts = re.split(r"(?m)^(?=## Run )", text)
        for p in parts[1:]:
            if f"<!-- run {stamp} -->" not in p:
                old_sections.append(p.rstrip() + "\n")
    doc = [HEADER, "## History", "",
           "One row per run, newest first (N=200 rows are `true`; ratios of medians).", "",
           HIST_START, HIST_HEAD, *([hrow] if hrow else []), *old_rows, HIST_END, "",
           "Push/pull, one row per run that measured them (medians; MiB/s = size × hosts ÷ "
           "wall; RSS at 10 hosts):", "",
           PHIST_START, PHIST_HEAD, *([prow] if prow else []), *old_prows, PHIST_END, "",
           sec.rstrip() + "\n"]
    body = "\n".join(doc)
    if old_sections:
        body += "\n" + "\n".join(old_sections)
    out.write_text(body)
    print(f"wrote {out} (section {stamp}; {len(old_sections)} older section(s) kept)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
