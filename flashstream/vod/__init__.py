# -*- test-case-name: tests.test_vod_player -*-
"""
On-demand media: reading FLV and MP4-family files, playing them over RTMP,
and recording live streams into FLV files.

``source.py`` turns a file into a shared, cached index (:class:`MediaSource`);
``flv.py`` and ``mp4.py`` build those indexes; ``player.py`` plays one file on
one NetStream (pacing, seek, pause, play2); ``recorder.py`` writes FLV files
from publishers.
"""
