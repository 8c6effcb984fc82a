"""Ingest: cut a source video into 30 fps clips and decode their rawframes (cut and frames in one pass)."""
