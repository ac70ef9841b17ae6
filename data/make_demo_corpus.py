"""Write the synthetic demo corpus (see data/README.md).

    python data/make_demo_corpus.py OUT_DIR [--seed N] [--clips-per-class K] [--overwrite]

Same seed, same bytes; rerunning on a complete corpus rewrites nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

try:
    from moclip.demo import DEMO_CLASSES, generate_demo_corpus
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from moclip.demo import DEMO_CLASSES, generate_demo_corpus


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", help="output folder (created; holds <ClassName>/<clip>.<mp4|avi>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clips-per-class", type=int, default=12)
    p.add_argument("--overwrite", action="store_true", help="replace another seed's corpus in OUT_DIR")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        paths = generate_demo_corpus(
            args.out_dir, seed=args.seed, clips_per_class=args.clips_per_class, overwrite=args.overwrite,
        )
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mb = sum(q.stat().st_size for q in paths) / 1e6
    print(f"{len(paths)} clips in {len(DEMO_CLASSES)} classes ({mb:.1f} MB) under {args.out_dir}: "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
