"""
A long fuzz run over every parser a peer feeds (the targets of
``tests/fuzz_targets.py``): handshake (plain, digest, RTMPE types), chunks,
AMF0, AMF3, commands, shared objects, control messages and aggregates, and a
whole ServerConnection after connect.

With atheris (coverage-guided libFuzzer, ``pip install atheris``) the run
happens in a child process with flashstream instrumented, starting from the
targets' valid seeds; otherwise hypothesis draws arbitrary and mutated inputs.
Anything but a RemoteProtocolError is a crash: it is recorded (one example per
exception type and place) and the run goes on.  Prints inputs tried and
crashes found per target and writes one JSON line to
``bench/results/fuzz-<UTC time>.jsonl``.

    python bench/fuzz.py --seconds 300            # atheris if installed
    python bench/fuzz.py --engine hypothesis --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"


class Tally:
    """Inputs tried and crashes found per target, saved to a JSON file now and then."""

    def __init__(self, names: Sequence[str], path: Path | None) -> None:
        self.tried = dict.fromkeys(names, 0)
        self.crashes: dict[str, dict[str, object]] = {}
        self.path = path
        self._saved = time.monotonic()

    def record(self, name: str, data: bytes, error: BaseException) -> None:
        """Keep the first input for each (target, exception type, innermost place)."""
        frames = traceback.extract_tb(error.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        key = f"{name} {type(error).__name__} {where}"
        if key not in self.crashes:
            self.crashes[key] = {
                "target": name,
                "error": f"{type(error).__name__}: {error}"[:300],
                "where": where,
                "input_hex": data[:2048].hex(),
                "traceback": "".join(traceback.format_exception(error))[-3000:],
            }
            self.save(force=True)

    def save(self, force: bool = False) -> None:
        """Write the tally (at most once a second unless forced)."""
        now = time.monotonic()
        if self.path is None or (not force and now - self._saved < 1.0):
            return
        self._saved = now
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"tried": self.tried, "crashes": self.crashes}))
        os.replace(tmp, self.path)


def run_one(tally: Tally, name: str, data: bytes) -> None:
    """Run one input through one target; anything but a RemoteProtocolError is a crash."""
    from flashstream.rtmp.errors import RemoteProtocolError
    from tests.fuzz_targets import TARGETS

    tally.tried[name] += 1
    try:
        TARGETS[name](data)
    except RemoteProtocolError:
        pass
    except Exception as error:  # a crash: what the fuzzer is looking for
        tally.record(name, data, error)
    tally.save()


# -- atheris -----------------------------------------------------------------------


def atheris_worker(stats: Path, corpus: Path, seconds: float) -> None:
    """Run libFuzzer in this process (never returns: libFuzzer exits)."""
    import atheris

    with atheris.instrument_imports(include=["flashstream"]):
        import flashstream.rtmp.amf0  # noqa: F401
        import flashstream.rtmp.amf3  # noqa: F401
        import flashstream.rtmp.chunks  # noqa: F401
        import flashstream.rtmp.commands  # noqa: F401
        import flashstream.rtmp.connection  # noqa: F401
        import flashstream.rtmp.handshake  # noqa: F401
        import flashstream.rtmp.messages  # noqa: F401
        import flashstream.rtmp.rtmpe  # noqa: F401
        import flashstream.rtmp.sharedobject  # noqa: F401
        import flashstream.rtmp.tunnel  # noqa: F401
        import flashstream.sniff  # noqa: F401
    from tests.fuzz_targets import TARGETS

    names = sorted(TARGETS)
    tally = Tally(names, stats)

    def one_input(data: bytes) -> None:
        if not data:
            return
        run_one(tally, names[data[0] % len(names)], data[1:])

    atheris.Setup(
        [sys.argv[0], f"-max_total_time={int(seconds)}", "-max_len=8192", "-rss_limit_mb=1024",
         str(corpus)],
        one_input,
    )  # fmt: skip
    atheris.Fuzz()


def run_atheris(seconds: float) -> dict[str, object]:
    """Seed a corpus, run the worker in a child process, read its tally."""
    from tests.fuzz_targets import SEEDS, TARGETS

    names = sorted(TARGETS)
    with tempfile.TemporaryDirectory(prefix="flashstream-fuzz-") as work:
        corpus = Path(work) / "corpus"
        corpus.mkdir()
        for name, seeds in SEEDS.items():
            for index, seed in enumerate(seeds):
                (corpus / f"{name}-{index}").write_bytes(bytes([names.index(name)]) + seed)
        stats = Path(work) / "stats.json"
        child = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(stats), str(corpus), str(seconds)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _, err = child.communicate(timeout=seconds + 120)
        except subprocess.TimeoutExpired:
            child.kill()
            _, err = child.communicate()
        if not stats.exists():
            raise SystemExit(f"the atheris worker left no results:\n{err[-3000:]}")
        result = json.loads(stats.read_text())
        result["corpus_files"] = len(list(corpus.iterdir()))
        result["libfuzzer_tail"] = err.strip().splitlines()[-3:]
        result["worker_exit"] = child.returncode
        return dict(result)


# -- hypothesis ----------------------------------------------------------------------


def run_hypothesis(seconds: float) -> dict[str, object]:
    """Arbitrary and mutated inputs per target, round robin, until time is up."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.fuzz_targets import SEEDS, TARGETS

    names = sorted(TARGETS)
    tally = Tally(names, None)
    deadline = time.monotonic() + seconds

    def inputs(name: str) -> st.SearchStrategy[bytes]:
        seeds = SEEDS[name]

        @st.composite
        def mutated(draw: st.DrawFn) -> bytes:
            seed = bytearray(draw(st.sampled_from(seeds)))
            for _ in range(draw(st.integers(0, 16))):
                seed[draw(st.integers(0, len(seed) - 1))] = draw(st.integers(0, 255))
            return bytes(seed[: draw(st.integers(0, len(seed)))]) + draw(st.binary(max_size=64))

        return st.one_of(st.binary(max_size=2048), mutated())

    def make_check(name: str) -> Callable[[], None]:
        @settings(
            max_examples=500,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(data=inputs(name))
        def check(data: bytes) -> None:
            run_one(tally, name, data)

        return check

    while time.monotonic() < deadline:
        for name in names:
            if time.monotonic() >= deadline:
                break

            check = make_check(name)
            check()
    return {"tried": tally.tried, "crashes": tally.crashes}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--worker":
        atheris_worker(Path(argv[1]), Path(argv[2]), float(argv[3]))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=300.0, help="how long to fuzz")
    parser.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    parser.add_argument("--label", default="", help="free text stored with the results")
    args = parser.parse_args(argv)
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "hypothesis"
    started = time.time()
    result = run_atheris(args.seconds) if engine == "atheris" else run_hypothesis(args.seconds)
    tried = dict(result["tried"])  # type: ignore[call-overload]
    crashes = dict(result["crashes"])  # type: ignore[call-overload]
    print(f"engine {engine}, {args.seconds:.0f} s")
    print(f"{'target':<15} {'inputs':>10} {'crashes':>8}")
    for name in sorted(tried):
        found = sum(1 for c in crashes.values() if c["target"] == name)
        print(f"{name:<15} {tried[name]:>10} {found:>8}")
    print(f"{'total':<15} {sum(tried.values()):>10} {len(crashes):>8}")
    for crash in crashes.values():
        print(f"\nCRASH in {crash['target']}: {crash['error']} at {crash['where']}")
        print(f"input: {crash['input_hex'][:200]}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    out = RESULTS / f"fuzz-{stamp}.jsonl"
    record = {"kind": "fuzz", "engine": engine, "seconds": args.seconds, "label": args.label,
              "started": stamp, **result}  # fmt: skip
    out.write_text(json.dumps(record) + "\n")
    print(f"\nresults: {out.relative_to(ROOT)}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
