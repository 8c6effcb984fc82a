"""``python -m services.ingest`` (gRPC API) | ``python -m services.ingest work`` (queue worker)."""

from services.common.process import main
from services.ingest.handlers import HANDLERS
from services.ingest.servicer import api

if __name__ == "__main__":
    main("ingest", api, HANDLERS)
