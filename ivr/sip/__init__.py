"""The SIP runtime (pyVoIP) and its building blocks."""
