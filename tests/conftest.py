"""Suite-wide settings: the CLI's persistent compilation cache stays off in tests unless
``SAJAX_COMPILE_CACHE`` names a directory (a test run must not depend on, or fill, the user's
cache; set the variable to measure a warm suite)."""
import os

os.environ.setdefault("SAJAX_COMPILE_CACHE", "off")
