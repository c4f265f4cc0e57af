"""Admission to the regional clusters: a request that cannot fit a worker's memory is
refused before it runs, and the clusters' slots are shared by size (``lanes``).
"""
