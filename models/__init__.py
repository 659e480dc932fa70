"""Pose estimation methods (one file each) and their codecs."""
