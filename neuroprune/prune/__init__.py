"""Pruning: dependency graph, structured removal, masks, importance, and the methods
(SPEAR and the baselines), all with the same call shape."""
