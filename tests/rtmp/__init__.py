"""Tests of the sans-IO RTMP core, flashstream.rtmp."""
