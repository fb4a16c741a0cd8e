"""Import: read what users bring (dataport packages, Claude Code transcripts, CSV), validate it
before anything is written, detect conflicts, write it, and undo it on request."""
