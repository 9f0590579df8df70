"""Stand-in images for the containers test (build.py), one Dockerfile per official image."""
