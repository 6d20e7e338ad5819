"""What an alignDRAW run draws for each held-out (caption type, slot, digit) combination: the
digits the conformity checker reads at the held-out digit's place, most common first, and how
often the caption's other (seen) digit is right, at sampling temperatures 0 (the prior's mean
path) and 1. `genlearn eval RUN --metric conformity` says how often each combination conforms;
this says what is drawn instead when it does not.

    python benchmarks/aligndraw_heldout.py runs/aligndraw [--n 300]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import header  # noqa: E402
from genlearn.data import captions as cap  # noqa: E402
from genlearn.eval.conformity import load_checker, read_positions  # noqa: E402
from genlearn.registry import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="an aligndraw run directory")
    parser.add_argument("--n", type=int, default=300, help="held-out test captions per combination")
    args = parser.parse_args()
    if not 1 <= args.n <= 1000:
        sys.exit(f"error: --n must be 1 to 1,000, got {args.n}")
    header("alignDRAW: what is drawn at the place of each held-out combination")
    model, checker = load_model(args.run), load_checker()
    model.eval()
    tokens = cap.load().split("test_heldout", binary=False)["caption"]
    kind = cap.caption_types(tokens)
    generator = torch.Generator().manual_seed(0)
    for tau in (0.0, 1.0):
        print(f"temperature {tau:g}: combination -> digits read at its place (10 = none); other digit right")
        for name, slot, digit in cap.HELD_OUT:
            k = cap.TYPES.index(name)
            chosen = tokens[kind == k][: args.n]
            texts = [cap.decode(t) for t in chosen]
            with torch.no_grad():
                samples = model.sample_in_chunks(
                    len(texts), generator=generator, temperature=tau, captions=texts
                )
            read, wanted = read_positions(checker, samples), cap.reading_of(chosen)
            place = int(cap.held_out_place(torch.tensor([k]))[0])
            drawn = ", ".join(f"{d}: {c}" for d, c in Counter(read[:, place].tolist()).most_common(3))
            line = f"  ({name}, slot {slot}, {digit}) -> {drawn}"
            if k < cap.TWO_DIGITS:
                other = place ^ 1
                line += f"; {(read[:, other] == wanted[:, other]).double().mean().item():.3f}"
            print(line)


if __name__ == "__main__":
    main()
