"""Media: RTP/RTCP, codecs, jitter buffer, mixer, levels, DTMF, playback; a thin asyncio edge. Knows nothing of calls."""
