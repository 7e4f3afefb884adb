"""The bottom layer: errors, atomic files, paths, progress, numerics, shared statistics and plotting.

Nothing here imports any other calibench package.
"""
