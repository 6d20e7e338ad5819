"""One file per model family, each reading like its paper."""
