"""The Anywhere Portal domain: configuration, directory, caller identification and
access, PINs and lockout, blocking profiles, call control — and the hooks that give the
portal dialplan (``dialplans/anywhere_portal.yaml``) access to them."""
