"""The annotate service: the annotation workbench (avaforge/workbench) over a job's artifacts, over HTTPS."""
