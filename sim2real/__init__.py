"""sim2real: make Virtual KITTI 2 look like real KITTI and measure the detection gap."""

__version__ = "0.1.0"
