"""twistd plugin: ``twistd -n flashstream`` (the server is imported lazily)."""

from twisted.application.service import ServiceMaker

flashstream = ServiceMaker(
    "flashstream",
    "flashstream.tap",
    "A Flash-era streaming media server: RTMP, RTMPS, RTMPT, RTMPE.",
    "flashstream",
)
