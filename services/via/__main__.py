"""``python -m services.via`` (gRPC API) | ``python -m services.via work [via|via_import|dataset ...]``."""

from services.common.process import main
from services.via.handlers import HANDLERS
from services.via.servicer import api

if __name__ == "__main__":
    main("via", api, HANDLERS)
