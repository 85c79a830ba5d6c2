"""Paper-specific report builders (tables, figures, claims) used by the report notebooks."""
