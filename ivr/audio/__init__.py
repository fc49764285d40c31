"""Telephony audio: prompt rendering, G.711, in-band DTMF."""
