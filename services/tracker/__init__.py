"""Tracker: Deep SORT track ids for a clip's detections."""
