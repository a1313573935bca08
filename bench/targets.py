"""Issue 5's speed targets checked in one run, each missed one beside the measured bound that says
whether any implementation of that kind could meet it on this machine.

    .venv/bin/python bench/targets.py --json out.json          # every peers.py row (~10 minutes)
    .venv/bin/python bench/targets.py --nets small --batches 1,16 --peers fastbp,jax
    .venv/bin/python bench/targets.py --recheck out.json      # a saved run under these rules

One process runs bench/peers.py's measurement (fastbp and every installed peer on the same nets,
data and initial weights, best of --repeats epochs, peers interleaved), then times alone the parts
that bound a training step:

  products   the step's matrix products through NumPy's BLAS (bench/limit.py; peers.py's "GEMM
             limit" column, measured with each row)
  Adam pass  Adam's own pass over the network's parameters, gradient and both moments
             (bench/adam_cost.py's AdamPass: the kernel the compiled step calls)
  W0 update  the first layer's rank-1 update, which no batch-1 SGD step skips when the input is
             dense (bench/batch1_floor.py)

"bound" is the most samples/s those parts leave a step, whatever the rest of it costs:

  batch 1    1 / W0 update (SGD); 1 / Adam pass (Adam)
  batch B    SGD: B / products; Adam: B / (rest + Adam pass), rest being the faster of the
             products and fastbp's plain-SGD step at that batch (at small batches the products
             carry NumPy's per-call overhead, and fastbp's SGD step beats them)

The pass and the update are counted on one core, as fastbp's mini-batch step runs them (it opens no
parallel region: fastbp/threads.py says why); "bound, 2 cores" halves them, the most a perfect split
could give. At batch 1, where fastbp splits them over two workers (fastbp/_kernels/cpu/online_pair.py:
two threads and layers past its size thresholds), "bound" is the two-core figure too.

Targets (issue 5):
  batch 1       fastbp >= 3x the faster of torch and jax
  batch 16-64   fastbp >= 1.5x the best peer (reference, torch, jax)
  batch >= 256  fastbp >= 1.1x the best peer, and >= 90% of the products' samples/s
  Adam          Adam's step costs at most 15% more than plain SGD's (same net, batch >= 16)

Verdicts: "met"; "bound below" (even the two-core bound misses the target: no implementation
that makes that pass or update once per step meets it here); "bound below on 1 core" (only a
perfect two-core split of it would); "headroom" (the bound allows the target, fastbp misses it);
"no bound" (fastbp already reaches the measured bound, which then bounds nothing).
Figures move 10-30% between runs on a shared machine: read a verdict near its line as such.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fastbp._kernels.cpu import online_pair

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402
from adam_cost import AdamPass, make_net  # noqa: E402
from batch1_floor import update_alone_us  # noqa: E402

TARGETS = {"batch 1": 3.0, "batch 16-64": 1.5, "batch >= 256": 1.1}
PRODUCTS_SHARE = 0.90  # of the products' samples/s, at batch >= 256
ADAM_EXTRA = 0.15
BATCH1_RIVALS = ("torch", "jax")
OWN_OR_PARTS = ("fastbp", "jax-step", "jax-scan")


def target_of(batch: int) -> tuple[str, float] | None:
    """(name, ratio) of the speed target for this batch size; None between 1 and 16 (none set)."""
    if batch == 1:
        return "batch 1", TARGETS["batch 1"]
    if 16 <= batch <= 64:
        return "batch 16-64", TARGETS["batch 16-64"]
    if batch >= 256:
        return "batch >= 256", TARGETS["batch >= 256"]
    return None


def verdict(reached: float, needed: float, bound_one_core, bound_two_cores) -> str:
    """How a figure stands against what its target needs, given the bounds (all samples/s, or all
    shares where larger is better; a bound of None is none measured). A bound that fastbp already
    reaches bounds nothing (noise, or NumPy's call overhead in the products at small batches)."""
    if reached >= needed:
        return "met"
    if bound_one_core is None or reached >= bound_one_core:
        return "no bound"
    if bound_two_cores < needed:
        return "bound below"
    if bound_one_core < needed:
        return "bound below on 1 core"
    return "headroom"


def adam_verdict(extra: float, floor_one_core: float, floor_two_cores: float) -> str:
    """verdict for Adam's extra cost over SGD (smaller is better), given the pass's share of an SGD
    step on one core and split over two."""
    if extra <= ADAM_EXTRA:
        return "met"
    if floor_two_cores > ADAM_EXTRA:
        return "bound below"
    if floor_one_core > ADAM_EXTRA:
        return "bound below on 1 core"
    return "headroom"


def measure_parts(nets: dict, batches, repeats: int) -> dict:
    """The parts timed alone, per net: parameter count, best Adam pass (s), W0 update (s)."""
    parts = {}
    for name, widths in nets.items():
        n_params = make_net(widths).params.size
        adam = AdamPass(n_params)
        adam.best_of(10)  # compile or load, warm up
        best_pass = min(adam.best_of(300) for _ in range(repeats))
        w0 = update_alone_us(widths[0], widths[1], repeats) * 1e-6 if 1 in batches else None
        parts[name] = {
            "parameters": n_params,
            "layers": len(widths) - 1,
            "adam_pass_s": best_pass,
            "w0_update_s": w0,
        }
    return parts


def runs_two_workers(optimizer: str, parameters: int, layers: int, threads) -> bool:
    """Whether fastbp's batch-1 step splits its passes over two workers for this rule and net."""
    if not isinstance(threads, int):
        return False
    return online_pair.workers_for(layers, parameters, optimizer == "adam", threads) == 2


def check(result: dict, parts: dict) -> dict:
    """Per row of peers' `result`: the target, what it needs, the bounds and the verdict; and per
    (net, batch) with both optimizers: Adam's extra cost against its floor."""
    rows = result["results"]
    threads = result.get("meta", {}).get("threads_used", {}).get("fastbp", 1)
    sgd_rate = {
        (r["net"], r["batch"]): r["samples_per_s"].get("fastbp") for r in rows if r["optimizer"] == "sgd"
    }
    speed, adam = [], []
    for r in rows:
        target = target_of(r["batch"])
        fastbp = r["samples_per_s"].get("fastbp")
        if target is None or fastbp is None:
            continue
        name, ratio = target
        batch, part = r["batch"], parts[r["net"]]
        # Batch 1's target names torch and jax; the others any peer. jax is the faster of its two.
        rivals = BATCH1_RIVALS if batch == 1 else [k for k in r["samples_per_s"] if k not in OWN_OR_PARTS]
        rates = {k: r["samples_per_s"][k] for k in rivals if k in r["samples_per_s"]}
        if not rates:
            continue
        rival = max(rates, key=rates.get)
        products = r.get("gemm_limit")
        if batch == 1:
            alone = part["adam_pass_s"] if r["optimizer"] == "adam" else part["w0_update_s"]
            one, two = 1.0 / alone, 2.0 / alone
            # Runs saved before parts carried "layers": peers' widths of the net.
            layers = part.get("layers") or len(peers.NETS.get(r["net"], (0, 0))) - 1
            if runs_two_workers(r["optimizer"], part["parameters"], layers, threads):
                one = two
        elif r["optimizer"] == "sgd":
            one = two = products
        else:
            sgd = sgd_rate.get((r["net"], batch))
            rest = batch / max(products or 0.0, sgd or 0.0) if (products or sgd) else 0.0
            one = batch / (rest + part["adam_pass_s"])
            two = batch / (rest + part["adam_pass_s"] / 2)
        needed = ratio * rates[rival]
        entry = {
            "net": r["net"], "optimizer": r["optimizer"], "batch": batch, "target": name,
            "fastbp": fastbp, "rival": rival, "rival_rate": rates[rival], "ratio": fastbp / rates[rival],
            "needed": needed, "bound": one, "bound_two_cores": two,
            "verdict": verdict(fastbp, needed, one, two),
        }  # fmt: skip
        if batch >= 256 and products:
            entry["products"] = products
            entry["share"] = fastbp / products
            entry["share_verdict"] = verdict(
                fastbp / products, PRODUCTS_SHARE, one / products, two / products
            )
        speed.append(entry)
        sgd = sgd_rate.get((r["net"], batch))
        if r["optimizer"] == "adam" and batch >= 16 and sgd:
            sgd_step = batch / sgd
            extra = sgd / fastbp - 1.0
            floor = part["adam_pass_s"] / sgd_step
            adam.append({
                "net": r["net"], "batch": batch, "sgd_step_s": sgd_step, "adam_step_s": batch / fastbp,
                "extra": extra, "pass_s": part["adam_pass_s"], "floor": floor, "floor_two_cores": floor / 2,
                "verdict": adam_verdict(extra, floor, floor / 2),
            })  # fmt: skip
    return {"speed": speed, "adam": adam}


def _rate(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _markdown(headers: list[str], align: str, rows: list[list[str]]) -> str:
    """A markdown table: `align` holds one character per column, l (left) or r (right)."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if a == "l" else "--:" for a in align) + "|",
    ]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows])


def speed_table(checked: dict) -> str:
    headers = ["net", "optimizer", "batch", "fastbp", "rival", "fastbp / rival", "target", "needed", "bound"]
    headers += ["bound, 2 cores", "verdict", "fastbp / products (>= 90%)"]
    rows = [
        [
            e["net"],
            e["optimizer"],
            str(e["batch"]),
            _rate(e["fastbp"]),
            f"{e['rival']} {_rate(e['rival_rate'])}",
            f"{e['ratio']:.2f}",
            f"{TARGETS[e['target']]:.1f}x",
            _rate(e["needed"]),
            _rate(e["bound"]),
            _rate(e["bound_two_cores"]),
            e["verdict"],
            f"{e['share']:.0%}: {e['share_verdict']}" if "share" in e else "-",
        ]
        for e in checked["speed"]
    ]
    return _markdown(headers, "llrrlrrrrrll", rows)


def adam_table(checked: dict) -> str:
    headers = ["net", "batch", "SGD step (us)", "Adam step (us)", "Adam extra", "pass alone (us)"]
    headers += ["pass / SGD step", "on 2 cores", "verdict"]
    rows = [
        [
            e["net"],
            str(e["batch"]),
            f"{e['sgd_step_s'] * 1e6:,.1f}",
            f"{e['adam_step_s'] * 1e6:,.1f}",
            f"{e['extra']:+.0%}",
            f"{e['pass_s'] * 1e6:,.1f}",
            f"{e['floor']:.0%}",
            f"{e['floor_two_cores']:.0%}",
            e["verdict"],
        ]
        for e in checked["adam"]
    ]
    return _markdown(headers, "lrrrrrrrl", rows)


def summary(checked: dict) -> str:
    """One line per target: how many rows meet it, and why the others do not."""
    groups: dict[str, list[str]] = {}
    for e in checked["speed"]:
        groups.setdefault(f"{e['target']}: >= {TARGETS[e['target']]:g}x", []).append(e["verdict"])
        if "share_verdict" in e:
            name = f"batch >= 256: >= {PRODUCTS_SHARE:.0%} of the products"
            groups.setdefault(name, []).append(e["share_verdict"])
    for e in checked["adam"]:
        groups.setdefault(f"Adam <= {ADAM_EXTRA:.0%} over SGD", []).append(e["verdict"])
    lines = []
    for name, verdicts in groups.items():
        counts = {v: verdicts.count(v) for v in dict.fromkeys(verdicts)}
        counted = ", ".join(f"{n} {v}" for v, n in counts.items())
        lines.append(f"- {name}: {counted} (of {len(verdicts)})")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="targets.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nets", type=peers._names, default=list(peers.NETS))
    parser.add_argument("--batches", type=peers._positive_ints, default=list(peers.BATCHES))
    parser.add_argument("--peers", type=peers._names, default=list(peers.PEERS))
    parser.add_argument("--repeats", type=int, default=peers.REPEATS)
    parser.add_argument("--rows", type=int, default=peers.ROWS)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--recheck", metavar="PATH", help="check a saved --json run again, measuring nothing")
    args = parser.parse_args(argv)
    unknown = [n for n in args.nets if n not in peers.NETS]
    if unknown:
        parser.error(f"unknown net(s) {', '.join(unknown)}; choose from {', '.join(peers.NETS)}")
    if args.repeats < 1 or args.rows < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--repeats, --rows and --threads must be positive")
    if "fastbp" not in args.peers:
        parser.error("--peers must include fastbp")
    nets = {name: peers.NETS[name] for name in args.nets}

    def log(line):
        print(line, file=sys.stderr, flush=True)

    tick = time.perf_counter()
    if args.recheck:
        # A saved run's measurements under this script's rules (bounds, verdicts): nothing is timed.
        with open(args.recheck) as f:
            saved = json.load(f)
        result, parts = {"meta": saved["meta"], "results": saved["results"]}, saved["parts"]
    else:
        result = peers.measure(
            nets=nets, batches=args.batches, peers=args.peers, repeats=args.repeats, threads=args.threads,
            rows=args.rows, log=log,
        )  # fmt: skip
        parts = measure_parts(nets, args.batches, args.repeats)
    checked = check(result, parts)
    print(peers.header(result))
    print()
    print(peers.table(result))
    print("\nparts alone (one core): " + "; ".join(
        f"{name} {p['parameters']:,} parameters, Adam pass {p['adam_pass_s'] * 1e6:,.1f} us"
        + (f", W0 update {p['w0_update_s'] * 1e6:,.2f} us" if p["w0_update_s"] else "")
        for name, p in parts.items()
    ))  # fmt: skip
    print("\n" + speed_table(checked))
    if checked["adam"]:
        print("\n" + adam_table(checked))
    print("\n" + summary(checked))
    if args.recheck:
        print(f"\nrechecked from {args.recheck}")
    else:
        print(f"\n{time.perf_counter() - tick:.0f} s in all")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({**result, "parts": parts, "checked": checked}, f, indent=1)
            f.write("\n")
        print(f"json: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
