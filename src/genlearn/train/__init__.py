"""The one training loop, checkpoints, optimisers and distributed data parallelism."""
