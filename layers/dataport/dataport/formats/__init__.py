"""One module per export format; `writer_for` picks the writer class for a format name."""
