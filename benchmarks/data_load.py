"""Decoding CIFAR-10 once vs loading the decoded cache: target, second load well under 1 s.

python benchmarks/data_load.py --data-dir ../shared/data/cifar10
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from core import data as D


def main() -> None:
    p = argparse.ArgumentParser()
    default = Path(__file__).resolve().parents[2] / "shared/data/cifar10"
    p.add_argument("--data-dir", default=str(default))
    args = p.parse_args()
    root = Path(args.data_dir)
    with tempfile.TemporaryDirectory() as cache:
        # A fresh, empty cache folder: the first load decodes, the second reads the cache.
        os.environ[D.ENV_CACHE_DIR] = cache
        t0 = time.perf_counter()
        first = D.load_dataset("cifar10", root)
        t1 = time.perf_counter()
        second = D.load_dataset("cifar10", root)
        t2 = time.perf_counter()
    assert (first.train_x == second.train_x).all()
    n = first.num_train + first.num_test
    print(
        f"{n} images: decode {t1 - t0:.2f} s, cached {t2 - t1:.3f} s, "
        f"ratio {(t1 - t0) / (t2 - t1):.1f}x"
    )


if __name__ == "__main__":
    main()
