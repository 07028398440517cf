"""The serving benchmark's table and its verdicts on the targets (benchmarks/serving.py)."""
from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any, Dict, List, Sequence, Tuple

from benchmarks import paired
from benchmarks.harness import markdown_table

if TYPE_CHECKING:  # benchmarks.serving imports this module
    from benchmarks.serving import ServingBenchmarkConfig

REST, GRPC = "REST :predict", "gRPC Predict"
REST_STATUS, GRPC_STATUS = "REST model status (no model call)", "gRPC GetModelStatus (no model call)"
FLOOR = "in-process serving_default"
FLOOR_PAUSE_MS = 0.5
FLOOR_PAUSED = f"in-process serving_default, {FLOOR_PAUSE_MS} ms sleep before each call"
# The same signature called on tf.saved_model.load's object, tf.constant per input (the call the
# server made before it ran signatures in a Session): what the Session's call saves.
FLOOR_LOADED = "in-process serving_default, tf.saved_model.load's signature"


def median_rows(runs: Dict[Tuple[str, int], List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """One row per (setup, clients): requests and errors summed, the rest medians of rounds."""
    rows = []
    for (setup, count), found in runs.items():
        row: Dict[str, Any] = {"setup": setup, "clients": count, "rounds": len(found),
                               "requests": sum(r["requests"] for r in found),
                               "errors": sum(r["errors"] for r in found)}
        for key in ("p50_ms", "p99_ms", "max_ms", "throughput", "client_cpu_ms",
                    "rows_per_model_call"):
            values = [r[key] for r in found if key in r]
            if values:
                row[key] = statistics.median(values)
        row["p50_range"] = (min(r["p50_ms"] for r in found), max(r["p50_ms"] for r in found))
        errors = [r["first_error"] for r in found if r.get("first_error")]
        if errors:
            row["first_error"] = errors[0]
        rows.append(row)
    return rows


def load_average() -> str:
    try:
        with open("/proc/loadavg") as handle:
            return " ".join(handle.read().split()[:3])
    except OSError:
        return "unknown"


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def _spread(row: Dict[str, Any]) -> str:
    """A row's median p50 and its rounds' range."""
    low, high = row["p50_range"]
    return f"p50 {row['p50_ms']:.2f} ms, rounds {low:.2f} to {high:.2f}"


def _latency_notes(by: Dict[Tuple[str, int], Dict[str, Any]]) -> List[str]:
    notes: List[str] = []
    floor, rest, grpc = by.get((FLOOR, 1)), by.get((REST, 1)), by.get((GRPC, 1))
    if not (floor and rest and grpc):
        return notes
    bound = 1.5 * floor["p50_ms"] + 1.0
    notes.append(f"- REST p50 at 1 client: {rest['p50_ms']:.2f} ms; target <= 1.5 x "
                 f"{floor['p50_ms']:.2f} + 1 = {bound:.2f} ms: "
                 f"{_verdict(rest['p50_ms'] <= bound)}")
    bound = 1.2 * floor["p50_ms"] + 0.5
    notes.append(f"- gRPC p50 at 1 client: {grpc['p50_ms']:.2f} ms; target <= 1.2 x "
                 f"{floor['p50_ms']:.2f} + 0.5 = {bound:.2f} ms "
                 f"({_verdict(grpc['p50_ms'] <= bound)}) and below REST's "
                 f"{rest['p50_ms']:.2f} ms ({_verdict(grpc['p50_ms'] < rest['p50_ms'])})")
    paused = by.get((FLOOR_PAUSED, 1))
    if paused:
        notes.append(f"- The same call after a {FLOOR_PAUSE_MS} ms sleep, as a server's call "
                     f"comes after a wait on the network: p50 {paused['p50_ms']:.2f} ms "
                     f"({paused['p50_ms'] / floor['p50_ms']:.2f}x back to back); gRPC against "
                     f"1.2 x that + 0.5 = {1.2 * paused['p50_ms'] + 0.5:.2f} ms: "
                     f"{_verdict(grpc['p50_ms'] <= 1.2 * paused['p50_ms'] + 0.5)} (the target "
                     "is the back-to-back floor's above)")
    loaded = by.get((FLOOR_LOADED, 1))
    if loaded:
        notes.append(f"- The same signature called on tf.saved_model.load's object (tf.constant "
                     f"per input, TensorFlow's inter-op pool): p50 {loaded['p50_ms']:.2f} ms, "
                     f"{loaded['p50_ms'] / floor['p50_ms']:.2f}x the Session's call above")
    for status, protocol in ((by.get((REST_STATUS, 1)), "REST"),
                             (by.get((GRPC_STATUS, 1)), "gRPC")):
        if status:
            notes.append(f"- {protocol} call that runs no model, at 1 client: p50 "
                         f"{status['p50_ms']:.2f} ms, of which the client's CPU "
                         f"{status.get('client_cpu_ms', 0):.2f} ms")
    return notes


def notes(records: List[Dict[str, Any]], args: ServingBenchmarkConfig) -> List[str]:
    by = {(r["setup"], r["clients"]): r for r in records}
    found = _latency_notes(by)
    for protocol in (REST, GRPC):
        if (protocol, 1) in by and (protocol, 32) in by:
            ratio = by[(protocol, 32)]["throughput"] / by[(protocol, 1)]["throughput"]
            found.append(f"- {protocol} throughput at 32 clients / 1 client: {ratio:.1f}x; "
                         f"target >= 3x: {_verdict(ratio >= 3)}")
    for (setup, count), on in sorted(by.items()):
        if setup.endswith("access log on"):
            off = by[(setup[:-2] + "off", count)]
            found.append(f"- {setup.split(',')[0]} p50 at {count} client(s) with metrics and "
                         f"access log on vs off (on {_spread(on)}, off {_spread(off)}): "
                         f"{paired.verdict(on['p50_changes'], 5)}")
    during = next((r for r in records if "during" in r["setup"]), None)
    if during is not None:
        steady = by[(f"{REST}, no switch", args.switch_clients)]
        ratio = during["p99_ms"] / steady["p99_ms"]
        found.append(f"- p99 during {args.switches} version switches at {args.switch_clients} "
                     f"clients (each {during['switch_seconds']:.1f} s from push to the old "
                     f"version's release): {during['p99_ms']:.2f} ms, {ratio:.2f}x the "
                     f"{steady['p99_ms']:.2f} ms with no switch; target <= 2x: "
                     f"{_verdict(ratio <= 2)}")
    return found


def _on_off_rounds(args: "ServingBenchmarkConfig") -> str:
    """As measure_servers runs them: at least one round, on at most one pair per round."""
    rounds = max(1, args.overhead_rounds)
    return (f"; on/off rows: medians of {rounds} rounds, each on and off back to back, on "
            f"{min(max(1, args.overhead_pairs), rounds)} pairs of fresh servers")


def text(records: List[Dict[str, Any]], args: ServingBenchmarkConfig, version: int,
         load: Tuple[str, str], costs: Sequence[Dict[str, Any]] = ()) -> str:
    """The table, how it was measured, and the verdicts; then the recording's cost measured
    in process (`costs`, benchmarks/serving_record_cost.py's) and its verdicts."""
    from benchmarks import serving_record_cost

    headers = ["setup", "clients", "requests", "errors", "p50 ms", "p99 ms", "max ms",
               "requests/s", "rows per model call", "client CPU ms per request"]
    rows = [[r["setup"], r["clients"], r["requests"], r["errors"], r["p50_ms"], r["p99_ms"],
             r.get("max_ms", ""), r.get("throughput") or "", r.get("rows_per_model_call", ""),
             r.get("client_cpu_ms", "")] for r in records]
    how = (f"Model version {version}; server flags: `{args.server_args or '(defaults)'}`; "
           "single-row requests, loopback, keep-alive connections (REST, raw HTTP/1.1 on "
           "asyncio) and channels (gRPC, sync calls on a channel per client thread). Floor, "
           f"REST and gRPC rows: medians of {max(1, args.rounds)} alternating rounds"
           f"{_on_off_rounds(args) if args.overhead_levels() else ''}. Load average (1, 5, 15 min) at the start {load[0]}, at the end {load[1]}, on "
           f"{_cores()} cores.")
    return "\n".join([markdown_table(headers, rows), "", how]
                     + ([args.note] if args.note else []) + notes(records, args)
                     + serving_record_cost.text(costs, records))


def _cores() -> int:
    import os

    return os.cpu_count() or 0
