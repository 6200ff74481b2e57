"""The package version, in a module of its own so the engine can import it without importing
the package root (which imports the engine)."""
__version__ = "0.1.0"
