"""ftx export stage."""
