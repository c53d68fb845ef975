"""What ``bench/load.py`` prints and draws: a line per cell, the ratios of issue
10's acceptance, the chart, the CPU-share profile."""

from __future__ import annotations

from pathlib import Path

HEADER = (
    f"{'server':8} {'backend':7} {'clients':>7} {'req/s':>8} {'p50 ms':>8} "
    f"{'p95 ms':>8} {'p99 ms':>8} {'done':>8} {'served':>7} {'never':>6} "
    f"{'errors':>7} {'non2xx':>6} {'pend r/c':>9} {'ovfl/drop':>10} "
    f"{'redis Mbps':>11}"
)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_cell(cell: dict, header: bool = False) -> None:
    """One line per cell (``header``: the column names first)."""
    if header:
        print(HEADER)
    errors = cell["errors"]
    kinds = ", ".join(f"{k} {v}" for k, v in errors.items() if v)
    print(
        f"{cell['server']:8} {cell['backend']:7} {cell['clients']:>7} "
        f"{cell['throughput']:>8.1f} {_num(cell['p50_ms']):>8} "
        f"{_num(cell['p95_ms']):>8} {_num(cell['p99_ms']):>8} "
        f"{cell['completed']:>8} {cell['served']:>7} {cell['never_served']:>6} "
        f"{sum(errors.values()):>7} {cell['non_2xx']:>6} "
        f"{cell['pending_requests']:>4}/{cell['pending_connects']:<4} "
        f"{cell['listen_overflows']:>4}/{cell['listen_drops']:<5} "
        f"{cell['redis_mbps']:>11.3f}" + (f"  [{kinds}]" if kinds else ""),
        flush=True,
    )


def print_ratios(cells: list[dict]) -> None:
    """Throughput ratios of issue 10's acceptance, per server and client count."""
    rate = {(c["server"], c["backend"], c["clients"]): c["throughput"] for c in cells}
    pairs = [
        ("tiered", "nowork", ">= 0.95 (0.9 at 10k, gthread)"),
        ("tiered", "redis", ">= 1.3"),
        ("tiered", "none", ">= 10 with sync workers"),
        ("locmem", "nowork", "-"),
        ("redis", "nowork", "-"),
    ]
    print("\nthroughput ratios (same server, clients and run length)")
    print(f"{'server':8} {'clients':>7} {'ratio':16} {'value':>8}  target")
    for server, _, clients in sorted({(s, 0, n) for s, _, n in rate}):
        for top, bottom, target in pairs:
            a, b = rate.get((server, top, clients)), rate.get((server, bottom, clients))
            if a is None or b is None:
                continue
            value = f"{a / b:.3f}" if b else "inf"
            print(
                f"{server:8} {clients:>7} {top + '/' + bottom:16} {value:>8}  {target}"
            )


def write_chart(cells: list[dict], path: Path) -> None:
    """Throughput and p99 against clients, a line per backend, a row per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = sorted({c["server"] for c in cells})
    if not servers:
        return
    fig, axes = plt.subplots(
        len(servers), 2, figsize=(11, 3.6 * len(servers)), squeeze=False
    )
    for row, server in enumerate(servers):
        mine = [c for c in cells if c["server"] == server]
        for backend in sorted({c["backend"] for c in mine}):
            line = sorted(
                (c["clients"], c["throughput"], c["p99_ms"])
                for c in mine
                if c["backend"] == backend
            )
            xs = [x for x, _, _ in line]
            axes[row][0].plot(xs, [t for _, t, _ in line], marker="o", label=backend)
            p99 = [(x, p) for x, _, p in line if p is not None]
            axes[row][1].plot(
                [x for x, _ in p99], [p for _, p in p99], marker="o", label=backend
            )
        axes[row][0].set_ylabel(f"{server}\nrequests/s (2xx)")
        axes[row][1].set_ylabel("p99 latency, ms")
        axes[row][1].set_yscale("log")
        for ax in axes[row]:
            ax.set_xscale("log")
            ax.set_xlabel("clients (open connections)")
            ax.grid(True, which="both", alpha=0.3)
        axes[row][0].legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_profile(result: dict) -> None:
    profile, load = result["profile"], result["load"]
    print(
        f"\nprofile: 1 gunicorn sync worker, tiered cache, {load['clients']} clients, "
        f"{load['completed']} requests, {profile['request_seconds']} s of request "
        "samples (pyinstrument, wall time)"
    )
    print(f"  tiered_cache's own frames: {_num(profile['own_pct'], 2)} %")
    print(
        "  under a tiered_cache frame (with the Redis/disk calls it makes): "
        f"{_num(profile['under_pct'], 2)} %"
    )
    print(
        f"  inside Django's WSGI handler ({profile['app_seconds']} s): own "
        f"{_num(profile['app_own_pct'], 2)} %, under "
        f"{_num(profile['app_under_pct'], 2)} %"
    )
    print("  by package (innermost frame outside the standard library):")
    for name, pct in profile["by_package_pct"].items():
        print(f"    {name:24} {_num(pct, 2):>7} %")
    print("  tiered_cache hot spots (own frames):")
    for name, pct in profile["hot_spots_pct"]:
        print(f"    {_num(pct, 2):>7} %  {name}")
