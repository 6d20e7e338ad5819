"""Pictures: image grids, the learned manifold, training curves."""
