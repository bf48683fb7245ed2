"""Metrics: the official KITTI 2D detection AP (:mod:`.kitti_ap`) and domain-gap statistics."""
