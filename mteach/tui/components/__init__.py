"""One module per widget of the studio."""
