"""``python -m services.trainer``: the trainer gRPC service (start/watch/cancel); training itself runs in
``python -m services.worker train`` processes. Environment as for the gateway; AVAFORGE_GRPC_PORT (50056)."""

from __future__ import annotations

import asyncio
import os

from avaforge.queue import WorkQueue
from avaforge.storage import S3Store
from avaforge.v1 import stages_pb2, stages_pb2_grpc
from services.catalog import TRAINER_PORT
from services.common.aio_server import run_until_signal, start_aio
from services.common.server import configure_logging
from services.trainer.service import TrainerServicer

NAME = stages_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name


async def main() -> None:
    configure_logging()
    queue = await WorkQueue.connect(os.environ.get("AVAFORGE_NATS_URL", "nats://127.0.0.1:4222"))
    servicer = TrainerServicer(queue, S3Store.from_env())
    server, _ = await start_aio(
        [(stages_pb2_grpc.add_TrainerServiceServicer_to_server, servicer, NAME)],
        int(os.environ.get("AVAFORGE_GRPC_PORT", TRAINER_PORT)),
        service="trainer",
    )
    await run_until_signal(server, float(os.environ.get("AVAFORGE_GRACE_S", "30")))
    await queue.close()


if __name__ == "__main__":
    asyncio.run(main())
