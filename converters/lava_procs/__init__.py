"""Lava processes of our own for what Lava and lava-dl lack (imports Lava: load on demand).

Kept in a package of their own: Lava's compiler looks for a process's models by importing
every module in the process's package folder.
"""
