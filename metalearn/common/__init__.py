"""Pieces shared by the strategies, the simulator and the environments."""
