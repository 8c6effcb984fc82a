"""Detector service: people in a batch of frames (``avaforge.stages.detect``); scale by running more."""
