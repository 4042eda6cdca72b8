"""Data: IDX readers, checksum-verified downloads, MNIST-like sources, device-resident batching."""
