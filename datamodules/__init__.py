"""Datasets, skeletons, the top-down transform and the method-agnostic PoseDataModule."""
