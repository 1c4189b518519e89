"""Readers that parse rendered files back exactly as the daemons do, for the structural checks."""
