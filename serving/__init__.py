"""ftx serving stage."""
