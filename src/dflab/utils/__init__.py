"""Small helpers with no dflab dependencies: thread counts."""
