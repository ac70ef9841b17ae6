"""Write the untrimmed demo corpus: long videos with known action boundaries (see data/README.md).

    python data/make_untrimmed_corpus.py OUT_DIR [--seed N] [--videos K] [--duration S] [--overwrite]

Same seed, same bytes; rerunning on an intact corpus rewrites nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

try:
    from moclip.demo.untrimmed import generate_untrimmed_corpus
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from moclip.demo.untrimmed import generate_untrimmed_corpus


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", help="output folder (created; holds untrimmed_NNN.<mp4|avi> and the ground truth)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--videos", type=int, default=6)
    p.add_argument("--duration", type=float, default=60.0, help="length of every video in seconds (6-3600)")
    p.add_argument("--overwrite", action="store_true", help="replace another corpus (or other files) in OUT_DIR")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        paths = generate_untrimmed_corpus(
            args.out_dir, seed=args.seed, videos=args.videos, duration_s=args.duration, overwrite=args.overwrite,
        )
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mb = sum(q.stat().st_size for q in paths) / 1e6
    print(f"{len(paths)} untrimmed videos ({mb:.1f} MB) under {args.out_dir}: {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
