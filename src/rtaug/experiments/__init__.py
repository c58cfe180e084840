"""Experiments: pipeline stages over files, and the quickstart."""
