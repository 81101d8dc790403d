"""flashstream: a Flash-era streaming media server (RTMP and friends) on Twisted."""

__version__ = "0.1.0"
