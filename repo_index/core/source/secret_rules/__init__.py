"""Rule files and the code that applies them: see core/source/secrets.py for the passes."""
