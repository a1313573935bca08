"""What a fresh process pays before fastbp trains: `import fastbp`, and the first `fit` with a warm
Numba cache and with a cold one. Each figure comes from a fresh subprocess; best of --repeats.

    .venv/bin/python bench/compile_time.py              # best of 3 (the cold runs take a while)
    .venv/bin/python bench/compile_time.py --quick      # one of each
    .venv/bin/python bench/compile_time.py --json compile.json
    .venv/bin/python bench/compile_time.py --rev HEAD~2 --repeats 2   # first fits against a revision

Rows:
  python startup     `python -c pass`: the floor under every other row's process
  import fastbp      time of the import statement alone, inside the process
  first fit, warm    building a 784-256-128-10 ReLU net and its first fit (Adam, one epoch of 256
                     rows at --batch) with NUMBA_CACHE_DIR holding the kernels already (filled by an
                     untimed run first)
  ... new activation the same with Tanh for ReLU, on that cache: a network whose activation no
                     fit has used yet compiles that activation's entry points (indirect.py)
  first fit, cold    the ReLU net with NUMBA_CACHE_DIR an empty temporary folder: every kernel it
                     needs compiles (and is written to that folder)
The fit rows also give a later fit in the same process (the best of three more; no compilation
left): the difference is what compiling or loading the kernels cost. The net is built inside the
timed span: building it compiles (or loads) its activations' entry points.

--rev REV times the import and the first fits (warm and cold) of this checkout and of REV's fastbp/
(git archive) instead, alternating fresh processes, and prints the ratios. All caches here live in
temporary folders, so this neither reads nor writes the cache of the checkout (concurrent cache
writes can crash Numba, see shared/NUMBA_NOTES.md), and kernels changed since the last run make no
difference. Python's bytecode cache is on for every run, as it is for an installed package.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FIT_SCRIPT = """
import json, time
t0 = time.perf_counter()
import numpy as np
import fastbp as fb
t1 = time.perf_counter()
rng = np.random.default_rng(0)
X = rng.standard_normal((256, 784), dtype=np.float32)
y = rng.integers(0, 10, size=256)
t2 = time.perf_counter()
net = fb.Sequential(fb.Dense(784, 256), fb.{activation}(), fb.Dense(256, 128), fb.{activation}(),
                    fb.Dense(128, 10), loss=fb.SoftmaxCrossEntropy(), seed=0)
net.fit(X, y, epochs=1, batch_size={batch}, optimizer="adam", verbose=0, seed=0)
t3 = time.perf_counter()
later = []
for seed in (1, 2, 3):
    tick = time.perf_counter()
    net.fit(X, y, epochs=1, batch_size={batch}, optimizer="adam", verbose=0, seed=seed)
    later.append(time.perf_counter() - tick)
print(json.dumps({{"import": t1 - t0, "first_fit": t3 - t2, "later_fit": min(later)}}))
"""

IMPORT_SCRIPT = """
import json, time
t0 = time.perf_counter()
import fastbp
print(json.dumps({"import": time.perf_counter() - t0}))
"""


def run_python(code: str, env_extra: dict | None = None, timeout: float = 600.0) -> dict:
    """Run `code` in a fresh interpreter (this one's executable) and parse the JSON line it prints
    last; adds "process" (wall seconds of the whole subprocess). It imports the fastbp of this
    checkout (PYTHONPATH, from a temporary working folder), or of env_extra's PYTHONPATH."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # Python's own bytecode cache stays on, as in an installed package (pip compiles it): without
    # it every import compiled fastbp's sources again, 0.08-0.15 s of the import figure.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(env_extra or {})
    tick = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tempfile.gettempdir(),
    )
    seconds = time.perf_counter() - tick
    if done.returncode != 0:
        raise RuntimeError(f"subprocess failed ({done.returncode}):\n{done.stderr[-2000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    result["process"] = seconds
    return result


def best(runs: list[dict]) -> dict:
    """The fastest run of each figure (each key's minimum over the runs)."""
    return {key: min(run[key] for run in runs) for key in runs[0]}


def measure(repeats: int = 3, batch: int = 32, log=None) -> dict:
    """{"startup", "import", "warm", "cold"}: each the best over `repeats` fresh processes, as a dict
    of seconds (keys "process", and "import" / "first_fit" / "later_fit" where they apply)."""
    say = log or (lambda line: None)
    fit = FIT_SCRIPT.format(batch=batch, activation="ReLU")
    results = {}
    say("python startup")
    results["startup"] = best([run_python("pass") for _ in range(repeats)])
    say("import fastbp")
    run_python(IMPORT_SCRIPT)  # untimed: writes the bytecode cache of a fresh checkout
    results["import"] = best([run_python(IMPORT_SCRIPT) for _ in range(repeats)])
    with tempfile.TemporaryDirectory(prefix="fastbp-warm-cache-") as warm:
        say("filling a warm cache (untimed)")
        run_python(fit, {"NUMBA_CACHE_DIR": warm, "FASTBP_CACHE": "1"})
        say("first fit, warm cache")
        results["warm"] = best(
            [run_python(fit, {"NUMBA_CACHE_DIR": warm, "FASTBP_CACHE": "1"}) for _ in range(repeats)]
        )
        say("first fit, warm cache, new activation")
        tanh = FIT_SCRIPT.format(batch=batch, activation="Tanh")
        runs = []
        for _ in range(repeats):  # each on a copy: the first would leave Tanh's entries behind
            with tempfile.TemporaryDirectory(prefix="fastbp-warm-cache-") as copy:
                shutil.copytree(warm, copy, dirs_exist_ok=True)
                runs.append(run_python(tanh, {"NUMBA_CACHE_DIR": copy, "FASTBP_CACHE": "1"}))
        results["new_activation"] = best(runs)
    cold_runs = []
    for i in range(repeats):
        say(f"first fit, cold cache ({i + 1}/{repeats})")
        with tempfile.TemporaryDirectory(prefix="fastbp-cold-cache-") as cold:
            cold_runs.append(run_python(fit, {"NUMBA_CACHE_DIR": cold, "FASTBP_CACHE": "1"}))
    results["cold"] = best(cold_runs)
    return results


def compare(rev: str, repeats: int, batch: int) -> None:
    """The import (5 x repeats runs) and the first fits (warm and cold, repeats runs) of this
    checkout and of `rev`, alternating fresh processes (each cold one with an empty cache; each
    tree's warm cache, and its bytecode, filled by an untimed run first)."""
    from ab_fit import export

    fit = FIT_SCRIPT.format(batch=batch, activation="ReLU")
    with tempfile.TemporaryDirectory(prefix="fastbp-rev-") as tmp:
        trees = {rev: export(rev, os.path.join(tmp, "rev")), "this checkout": str(ROOT)}
        warm = {name: tempfile.mkdtemp(dir=tmp) for name in trees}
        seconds = {(name, kind): [] for name in trees for kind in ("import", "warm", "cold")}
        for name, tree in trees.items():
            run_python(fit, {"NUMBA_CACHE_DIR": warm[name], "FASTBP_CACHE": "1", "PYTHONPATH": tree})
        # The import takes well under a second: five alternating runs per fit, for a median as well.
        for _ in range(5 * repeats):
            for name, tree in trees.items():
                seconds[name, "import"].append(run_python(IMPORT_SCRIPT, {"PYTHONPATH": tree})["import"])
        for i in range(repeats):
            for name, tree in trees.items():
                print(f"first fits, {name} ({i + 1}/{repeats})", file=sys.stderr, flush=True)
                env = {"NUMBA_CACHE_DIR": warm[name], "FASTBP_CACHE": "1", "PYTHONPATH": tree}
                seconds[name, "warm"].append(run_python(fit, env)["first_fit"])
                with tempfile.TemporaryDirectory(prefix="fastbp-cold-cache-") as cold:
                    env = {"NUMBA_CACHE_DIR": cold, "FASTBP_CACHE": "1", "PYTHONPATH": tree}
                    seconds[name, "cold"].append(run_python(fit, env)["first_fit"])
    net = f"784-256-128-10 ReLU, Adam, batch {batch}"
    print(f"import ({5 * repeats} fresh processes each) and first fit (s), {net}; {repeats} each")
    for kind in ("import", "warm", "cold"):
        for name in trees:
            runs = seconds[name, kind]
            print(
                f"  {kind}, {name}: best {min(runs):.2f}, median {statistics.median(runs):.2f}, runs "
                + ", ".join(f"{s:.2f}" for s in runs)
            )
        ratio = min(seconds[rev, kind]) / min(seconds["this checkout", kind])
        median = statistics.median(seconds[rev, kind]) / statistics.median(seconds["this checkout", kind])
        print(f"  {kind}: {rev} / this checkout {ratio:.2f}x (best), {median:.2f}x (median)")


def table(results: dict) -> str:
    def cell(value):
        return "-" if value is None else f"{value:.2f}"

    rows = [
        ("python startup", results["startup"]["process"], None, None),
        ("import fastbp", results["import"]["process"], results["import"]["import"], None),
        (
            "first fit, warm cache",
            results["warm"]["process"],
            results["warm"]["first_fit"],
            results["warm"]["later_fit"],
        ),
        (
            "first fit, warm cache, new activation",
            results["new_activation"]["process"],
            results["new_activation"]["first_fit"],
            results["new_activation"]["later_fit"],
        ),
        (
            "first fit, cold cache",
            results["cold"]["process"],
            results["cold"]["first_fit"],
            results["cold"]["later_fit"],
        ),
    ]
    lines = ["| what | whole process (s) | import / first fit (s) | later fit (s) |", "|---|--:|--:|--:|"]
    lines += [f"| {name} | {cell(p)} | {cell(a)} | {cell(b)} |" for name, p, a, b in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per figure (default 3)")
    parser.add_argument("--quick", action="store_true", help="one process per figure")
    parser.add_argument("--batch", type=int, default=32, help="batch size of the timed fits (default 32)")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--rev", help="time first fits against this git revision instead")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    if repeats < 1 or args.batch < 1:
        parser.error("--repeats and --batch must be positive")
    if args.rev:
        compare(args.rev, repeats, args.batch)
        return 0
    results = measure(repeats, args.batch, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"best of {repeats} fresh process(es); fit: 784-256-128-10, Adam, 256 rows, batch {args.batch}\n")
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"repeats": repeats, "batch": args.batch, **results}, f, indent=1)
        print(f"\njson: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
