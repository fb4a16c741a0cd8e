"""Backups: the stored format (format.py), the catalog of backups (catalog.py, an adapter), the
backup writer the export pipeline runs (writer.py) and what reads a stored backup back."""
