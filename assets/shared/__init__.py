"""Glue shared by the asset modules (no asset is defined here): partitions, artifact I/O, loaders, configs,
the observable-source helpers and the transferability cell cache."""
