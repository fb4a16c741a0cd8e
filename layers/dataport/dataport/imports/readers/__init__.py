"""One reader per import source (see base.py for what every reader yields, and in which order):
dataport JSON and JSONL packages, Claude Code transcripts, CSV."""
