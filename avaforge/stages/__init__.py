"""The pipeline stages, one module each; every stage is a pure, idempotent function of inputs + settings.

ingest (probe + cut) -> frames -> detect -> track -> proposals -> via_export -> [human or autolabel]
-> via_import -> dataset. The embedded runner (``avaforge.runner``) and the services call these same
functions; neither holds stage logic.
"""
