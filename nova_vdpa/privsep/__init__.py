"""Privileged entrypoints of nova-vdpa (oslo.privsep).

Holds the single privsep context and the narrow functions that need it.
Every check on the arguments happens before escalation, in the unprivileged
caller; the entrypoints take primitive arguments only.
"""
