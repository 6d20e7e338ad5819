"""Data sets: pinned MNIST (and, later, captions and 2-D toy mixtures)."""
