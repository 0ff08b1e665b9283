"""The MLLP listener: the ``hl7`` library's asyncio server in a thread of its own.

Each connection is read one MLLP block at a time and answered before the
next is read (HL7 original mode). The work of a message (index writes) runs
in the loop's thread pool, so one slow message does not hold the other
connections. A frame over MAX_FRAME, bytes outside a frame, a connection
cut mid-frame or silent for IDLE_TIMEOUT end that connection only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from hl7.mllp import HL7StreamReader, HL7StreamWriter, InvalidBlockError, start_hl7_server

from pacsbox.config import Config
from pacsbox.hl7.process import Processor

log = logging.getLogger("pacsbox.hl7")

MAX_FRAME = 1 << 20  # 1 MB: an order or ADT is a few kB; more is a mistake or an attack
IDLE_TIMEOUT = 300.0  # seconds a connection may stay silent (RIS keep theirs open)
WORKERS = 2  # messages carried out at once, all connections together


class Hl7Listener:
    """Serves HL7PortNumber on BindAddress until ``stop``; ``port`` is the bound one."""

    def __init__(self, cfg: Config, port: int | None = None) -> None:
        self.cfg = cfg
        self.processor = Processor(cfg)
        self.requested = cfg.HL7PortNumber if port is None else port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="hl7")
        self._thread = threading.Thread(target=self._loop.run_forever, name="hl7", daemon=True)

    def start(self) -> None:
        """Bind and serve; raises OSError when the port cannot be bound."""
        future = asyncio.run_coroutine_threadsafe(self._bind(), self._loop)
        self._thread.start()
        self._server = future.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("HL7 MLLP listener on %s:%d", self.cfg.BindAddress or "*", self.port)

    async def _bind(self) -> asyncio.Server:
        server: asyncio.Server = await start_hl7_server(
            self._connection, self.cfg.BindAddress or None, self.requested, limit=MAX_FRAME
        )
        return server

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def _connection(self, reader: HL7StreamReader, writer: HL7StreamWriter) -> None:
        address = (writer.get_extra_info("peername") or ("?",))[0]
        try:
            while True:
                try:
                    block = await asyncio.wait_for(reader.readblock(), IDLE_TIMEOUT)
                except asyncio.IncompleteReadError as exc:
                    if exc.partial.strip():
                        log.warning("HL7 from %s: connection closed inside a frame", address)
                    return
                except ValueError:
                    log.warning(
                        "HL7 from %s: frame over %d bytes; connection closed", address, MAX_FRAME
                    )
                    return
                except InvalidBlockError:
                    log.warning("HL7 from %s: bytes outside an MLLP frame; connection closed",
                                address)  # fmt: skip
                    return
                except TimeoutError:
                    return
                answer = await self._loop.run_in_executor(
                    self._pool, self.processor.handle, bytes(block), address
                )
                writer.writeblock(answer.data)
                await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.info("HL7 from %s: connection lost (%s)", address, exc)
        except Exception as exc:  # noqa: BLE001 - one connection must not stop the listener
            log.error("HL7 from %s: %s: %s", address, type(exc).__name__, exc)
        finally:
            writer.close()
