"""Checkpoint and restore of containers: options, CRIU's options per concern, metadata, images, operations."""
